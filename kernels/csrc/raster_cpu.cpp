// Triangle visibility on the CPU: the per-pixel depth test of dreamsmith.kernels.raster.rasterize_reference.
// Input: the reference's per-triangle setup (params [22, T], see _triangle_setup) and pixel bounding boxes.
// Output: per pixel the smallest key (quantised depth << 32 | triangle id), or INT64_MAX where nothing covers it.
// The edge and depth arithmetic repeats the reference's operations in the same order (built with
// -ffp-contract=off), so both produce the same keys.
#include <torch/extension.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <cstdint>
#include <limits>
#include <vector>

torch::Tensor raster_keys(torch::Tensor params, torch::Tensor tids, torch::Tensor x0, torch::Tensor y0,
                          torch::Tensor bw, torch::Tensor bh, int64_t batch, int64_t num_faces, int64_t height,
                          int64_t width) {
  params = params.contiguous();
  tids = tids.to(torch::kInt64).contiguous();
  x0 = x0.to(torch::kInt64).contiguous(); y0 = y0.to(torch::kInt64).contiguous();
  bw = bw.to(torch::kInt64).contiguous(); bh = bh.to(torch::kInt64).contiguous();
  const int64_t n_tri = tids.size(0);
  auto keys = torch::full({batch * height * width}, std::numeric_limits<int64_t>::max(), torch::kInt64);
  int64_t* kp = keys.data_ptr<int64_t>();
  const int64_t* tp = tids.data_ptr<int64_t>();
  const int64_t *xp = x0.data_ptr<int64_t>(), *yp = y0.data_ptr<int64_t>();
  const int64_t *wp = bw.data_ptr<int64_t>(), *hp = bh.data_ptr<int64_t>();
  // Triangles are sorted by b * F + f: image b owns the range [first[b], first[b + 1]).
  std::vector<int64_t> first(batch + 1, n_tri);
  for (int64_t b = 0, i = 0; b <= batch; ++b) {
    while (i < n_tri && tp[i] / num_faces < b) ++i;
    first[b] = i;
  }
  const int64_t threads = at::get_num_threads();
  const int64_t bands = batch >= threads ? 1 : std::max<int64_t>(1, std::min<int64_t>(height, 4 * threads));
  AT_DISPATCH_FLOATING_TYPES(params.scalar_type(), "raster_keys", [&] {
    const scalar_t* pp = params.data_ptr<scalar_t>();
    const scalar_t levels_half = scalar_t(0.5 * 2147483647.0);
    at::parallel_for(0, batch * bands, 1, [&](int64_t begin, int64_t end) {
      for (int64_t task = begin; task < end; ++task) {
        const int64_t b = task / bands, band = task % bands;
        const int64_t r0 = height * band / bands, r1 = height * (band + 1) / bands;
        int64_t* kb = kp + b * height * width;
        for (int64_t i = first[b]; i < first[b + 1]; ++i) {
          const int64_t ya = std::max(yp[i], r0), yb = std::min(yp[i] + hp[i], r1);
          if (ya >= yb) continue;
          scalar_t prm[22];
          for (int q = 0; q < 22; ++q) prm[q] = pp[q * n_tri + i];
          const int64_t fid = tp[i] - b * num_faces;
          for (int64_t row = ya; row < yb; ++row) {
            const scalar_t py = scalar_t(row);
            for (int64_t col = xp[i]; col < xp[i] + wp[i]; ++col) {
              const scalar_t px = scalar_t(col);
              bool inside = true;
              scalar_t depth = 0;
              for (int e = 0; e < 3; ++e) {
                const scalar_t t1 = py - prm[4 * e + 1];
                const scalar_t t2 = prm[4 * e + 2] * t1;
                const scalar_t t3 = px - prm[4 * e];
                const scalar_t t4 = prm[4 * e + 3] * t3;
                const scalar_t ef = t2 - t4;
                const scalar_t sef = prm[12 + e] * ef;
                inside = inside && ((sef > 0) || (ef == 0 && prm[15 + e] > 0));
                depth = depth + sef * prm[18 + e];
              }
              if (!inside) continue;
              depth = depth * prm[21];
              if (!(depth >= -1 && depth <= 1)) continue;
              const int64_t q = int64_t((depth + 1) * levels_half);
              const int64_t key = (q << 32) | fid;
              int64_t& slot = kb[row * width + col];
              if (key < slot) slot = key;
            }
          }
        }
      }
    });
  });
  return keys;
}
