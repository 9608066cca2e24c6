"""The C++ kernels' cache: a built library loads without any lock, a lock left by a dead process never stops the
next one, two processes starting at once build once, a build killed midway leaves nothing that stops the next, a
wait on a live builder is reported and bounded (then the references run), and each source gets its own entry.

The "compiler" in these tests copies the library that the suite's own build made (``make`` builds it), so that what
is loaded at the end is the real library; the build itself is torch's and covered by the kernels' other tests.
"""

from __future__ import annotations

import os
import queue
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from dreamsmith.kernels import cpu_build

DRIVER = r"""
import shutil, sys
from pathlib import Path
from dreamsmith.kernels import cpu_build
real = Path(sys.argv[1])

def fake_compile(folder, verbose=False):
    (folder / "half.o").write_text("x")
    (folder / "lock").write_text("")  # as torch's builder leaves it
    print("compiling", flush=True)
    sys.stdin.readline()  # the test says when the compiler is done
    shutil.copy2(real, folder / real.name)
    return folder / real.name

def report(message, waited, limit):
    print("waiting" if message == cpu_build.WAIT_MESSAGE else "building", flush=True)

cpu_build._compile = fake_compile
module = cpu_build.build(report, limit=float(sys.argv[2]))
print("loaded", hasattr(module, "hash_forward"), flush=True)
"""

HOLDER = r"""
import sys
from filelock import FileLock
lock = FileLock(sys.argv[1])
lock.acquire()
print("held", flush=True)
sys.stdin.readline()
"""


@pytest.fixture(scope="module")
def real_library() -> Path:
    if cpu_build.cpu_ops() is None:
        pytest.skip(f"the C++ kernels are not built here ({cpu_build.reason()})")
    return cpu_build.library_path()


@pytest.fixture
def cache(monkeypatch, tmp_path) -> Path:
    monkeypatch.setenv("DREAMSMITH_KERNEL_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def _start(code: str, *args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", code, *args], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            text=True, env=dict(os.environ))


def _lines_into(proc: subprocess.Popen, index: int, out: queue.Queue) -> threading.Thread:
    def read() -> None:
        for line in proc.stdout:
            out.put((index, line.strip()))
        out.put((index, None))

    thread = threading.Thread(target=read, daemon=True)
    thread.start()
    return thread


def _wait_for(proc: subprocess.Popen, word: str) -> None:
    for line in proc.stdout:
        if line.strip() == word:
            return
    raise AssertionError(f"the process ended before it said {word!r} (exit {proc.wait()})")


def _fake_compile(real: Path, calls: list):
    def compile_(folder: Path, verbose: bool = False) -> Path:
        calls.append(folder)
        shutil.copy2(real, folder / real.name)
        return folder / real.name
    return compile_


def test_a_built_library_loads_while_another_process_holds_the_lock(real_library, cache, monkeypatch):
    target = cpu_build.library_path()
    target.parent.mkdir(parents=True)
    shutil.copy2(real_library, target)
    holder = _start(HOLDER, str(target.parent / cpu_build._LOCK_NAME))
    try:
        _wait_for(holder, "held")
        monkeypatch.setattr(cpu_build, "_compile", lambda *a, **k: pytest.fail("a built library was built again"))
        module = cpu_build.build(lambda *a: pytest.fail("loading a built library waited"), limit=0.0)
        assert hasattr(module, "hash_forward")
    finally:
        holder.kill()
        holder.wait()


def test_a_lock_left_by_a_killed_process_does_not_stop_the_next_build(real_library, cache, monkeypatch):
    folder = cpu_build.library_path().parent
    folder.mkdir(parents=True)
    holder = _start(HOLDER, str(folder / cpu_build._LOCK_NAME))
    _wait_for(holder, "held")
    holder.kill()  # dies holding the lock: its file stays
    holder.wait()
    (folder / "lock").write_text("")  # and the lock file torch's builder of an older version left
    assert (folder / cpu_build._LOCK_NAME).exists()
    calls: list = []
    monkeypatch.setattr(cpu_build, "_compile", _fake_compile(real_library, calls))
    waits = []
    module = cpu_build.build(lambda m, *_: waits.append(m), limit=60.0)
    assert hasattr(module, "hash_forward") and len(calls) == 1
    assert cpu_build.WAIT_MESSAGE not in waits and waits == [cpu_build.BUILD_MESSAGE]


def test_two_processes_starting_at_once_build_once(real_library, cache):
    procs = [_start(DRIVER, str(real_library), "120") for _ in range(2)]
    lines: queue.Queue = queue.Queue()
    for i, proc in enumerate(procs):
        _lines_into(proc, i, lines)
    said: dict[int, list[str]] = {0: [], 1: []}
    ended = 0
    try:
        while ended < 2:
            i, line = lines.get(timeout=120)
            if line is None:
                ended += 1
                continue
            said[i].append(line)
            builder = next((k for k in said if "compiling" in said[k]), None)
            if builder is not None and "waiting" in said[1 - builder] and "go" not in said[builder]:
                said[builder].append("go")  # the other one is waiting for it: let the compiler finish
                procs[builder].stdin.write("go\n")
                procs[builder].stdin.flush()
    finally:
        for proc in procs:
            proc.kill() if proc.poll() is None else None
            proc.wait()
    assert sum(s.count("compiling") for s in said.values()) == 1, said
    assert all(s[-1] == "loaded True" for s in said.values()), said
    assert [p.returncode for p in procs] == [0, 0]
    assert not list(cpu_build.library_path().parent.glob("build-*"))


def test_a_build_killed_midway_leaves_nothing_that_stops_the_next(real_library, cache, monkeypatch):
    first = _start(DRIVER, str(real_library), "60")
    _wait_for(first, "compiling")
    first.kill()
    first.wait()
    folder = cpu_build.library_path().parent
    assert not cpu_build.library_path().exists()  # no half library was published
    assert len(list(folder.glob("build-*"))) == 1  # its private build folder (with torch's "lock" in it) is left
    calls: list = []
    monkeypatch.setattr(cpu_build, "_compile", _fake_compile(real_library, calls))
    module = cpu_build.build(limit=60.0)
    assert hasattr(module, "hash_forward") and len(calls) == 1
    assert not list(folder.glob("build-*")) and not list(folder.glob(".*.part"))


def test_a_live_builder_is_waited_for_with_reports_then_the_references_run(real_library, cache, monkeypatch):
    folder = cpu_build.library_path().parent
    folder.mkdir(parents=True)
    holder = _start(HOLDER, str(folder / cpu_build._LOCK_NAME))
    monkeypatch.setenv("DREAMSMITH_KERNEL_WAIT_S", "2")
    monkeypatch.setattr(cpu_build, "_ops", None)
    monkeypatch.setattr(cpu_build, "_error", None)
    monkeypatch.setattr(cpu_build, "_compile", lambda *a, **k: pytest.fail("built while another process builds"))
    try:
        _wait_for(holder, "held")
        reports = []
        assert cpu_build.cpu_ops(lambda *a: reports.append(a)) is None
        assert "still building the kernels after 2 s" in cpu_build.reason()
        assert reports and all(m == cpu_build.WAIT_MESSAGE and limit == 2.0 for m, _, limit in reports)
        assert reports[-1][1] >= 2.0  # the last report says the whole limit was waited

        class Stop(Exception):
            pass

        def cancel(*_):
            raise Stop

        monkeypatch.setattr(cpu_build, "_error", None)
        with pytest.raises(Stop):  # a cancelled job stops the wait and decides nothing for the process
            cpu_build.cpu_ops(cancel)
        assert cpu_build._error is None and cpu_build._ops is None
    finally:
        holder.kill()
        holder.wait()


def test_each_source_gets_its_own_cache_entry_and_the_torch_version_names_it(monkeypatch, tmp_path):
    monkeypatch.setenv("DREAMSMITH_KERNEL_CACHE", str(tmp_path))
    here = cpu_build.cache_dir()
    assert cpu_build.torch.__version__.replace("+", "_") in here.name
    copy = tmp_path / "checkout" / "csrc"
    shutil.copytree(cpu_build.SOURCE_DIR, copy)
    monkeypatch.setattr(cpu_build, "SOURCE_DIR", copy)
    assert cpu_build.cache_dir() == here  # the same sources elsewhere share the built library
    (copy / "march_cpu.cpp").write_text((copy / "march_cpu.cpp").read_text() + "\n// changed\n")
    assert cpu_build.cache_dir() != here and cpu_build.cache_dir().parent == here.parent
