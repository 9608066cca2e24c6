// Ray marching through an occupancy grid and front-to-back compositing of packed samples, on the CPU.
// Same math as dreamsmith.kernels.march's references (see that module): sample k of a ray lies at
// t = near + (k + u) * step, is kept when t < far and its cell of the occupancy grid is occupied; packed samples
// are ray-major (a ray's samples are consecutive, in increasing t).
#include <torch/extension.h>
#include <ATen/Parallel.h>

#include <cmath>
#include <cstdint>
#include <vector>

namespace {

inline bool occupied(const float* x, const float* b0, const float* ext, const bool* mask, int64_t r) {
  int64_t ijk[3];
  for (int a = 0; a < 3; ++a) {
    const float u = (x[a] - b0[a]) / ext[a];
    if (!(u >= 0.0f && u <= 1.0f)) return false;
    int64_t c = int64_t(u * float(r));
    ijk[a] = c < 0 ? 0 : (c > r - 1 ? r - 1 : c);
  }
  return mask[(ijk[0] * r + ijk[1]) * r + ijk[2]];
}

}  // namespace

// Returns (ray [N] int64, k [N] int64, t [N], x [N, 3]) of the kept samples. `u` is [R, S] jitter or empty (0.5);
// `mask` is the [r, r, r] bool occupancy (empty: keep every sample inside [near, far)).
std::vector<torch::Tensor> march_samples(torch::Tensor o, torch::Tensor d, torch::Tensor near, torch::Tensor far,
                                         torch::Tensor u, double step_d, int64_t n_samples, torch::Tensor mask,
                                         torch::Tensor bbox) {
  TORCH_CHECK(o.scalar_type() == torch::kFloat32, "march_samples: float32 rays only");
  o = o.contiguous(); d = d.contiguous(); near = near.contiguous(); far = far.contiguous();
  const bool jitter = u.numel() > 0;
  if (jitter) u = u.contiguous();
  const bool use_mask = mask.numel() > 0;
  if (use_mask) mask = mask.contiguous();
  const int64_t r = use_mask ? mask.size(0) : 1;
  auto bb = bbox.to(torch::kFloat32).contiguous();
  const float b0[3] = {bb[0][0].item<float>(), bb[0][1].item<float>(), bb[0][2].item<float>()};
  const float ext[3] = {bb[1][0].item<float>() - b0[0], bb[1][1].item<float>() - b0[1], bb[1][2].item<float>() - b0[2]};
  const int64_t n_rays = o.size(0);
  const float step = float(step_d);
  const float* op = o.data_ptr<float>();
  const float* dp = d.data_ptr<float>();
  const float* np_ = near.data_ptr<float>();
  const float* fp = far.data_ptr<float>();
  const float* up = jitter ? u.data_ptr<float>() : nullptr;
  const bool* mp = use_mask ? mask.data_ptr<bool>() : nullptr;

  auto sample = [&](int64_t i, int64_t k, float* t, float* x) -> bool {
    const float uk = jitter ? up[i * n_samples + k] : 0.5f;
    *t = np_[i] + (float(k) + uk) * step;
    if (!(*t < fp[i])) return false;
    for (int a = 0; a < 3; ++a) x[a] = op[3 * i + a] + (*t) * dp[3 * i + a];
    return !use_mask || occupied(x, b0, ext, mp, r);
  };

  std::vector<int64_t> count(n_rays + 1, 0);
  at::parallel_for(0, n_rays, 256, [&](int64_t begin, int64_t end) {
    float t, x[3];
    for (int64_t i = begin; i < end; ++i) {
      int64_t c = 0;
      for (int64_t k = 0; k < n_samples; ++k) c += sample(i, k, &t, x);
      count[i + 1] = c;
    }
  });
  for (int64_t i = 0; i < n_rays; ++i) count[i + 1] += count[i];
  const int64_t n = count[n_rays];
  auto ray = torch::empty({n}, torch::kInt64);
  auto kk = torch::empty({n}, torch::kInt64);
  auto tt = torch::empty({n}, torch::kFloat32);
  auto xx = torch::empty({n, 3}, torch::kFloat32);
  int64_t* rp = ray.data_ptr<int64_t>();
  int64_t* kp = kk.data_ptr<int64_t>();
  float* tp = tt.data_ptr<float>();
  float* xp = xx.data_ptr<float>();
  at::parallel_for(0, n_rays, 256, [&](int64_t begin, int64_t end) {
    float t, x[3];
    for (int64_t i = begin; i < end; ++i) {
      int64_t j = count[i];
      for (int64_t k = 0; k < n_samples; ++k) {
        if (!sample(i, k, &t, x)) continue;
        rp[j] = i; kp[j] = k; tp[j] = t;
        xp[3 * j] = x[0]; xp[3 * j + 1] = x[1]; xp[3 * j + 2] = x[2];
        ++j;
      }
    }
  });
  return {ray, kk, tt, xx};
}

namespace {

// [start, end) of each run of equal ray ids in the ray-major packed order.
std::vector<int64_t> segments(const int64_t* ray, int64_t n) {
  std::vector<int64_t> s;
  for (int64_t i = 0; i < n; ++i)
    if (i == 0 || ray[i] != ray[i - 1]) s.push_back(i);
  s.push_back(n);
  return s;
}

}  // namespace

// Weights w_i = (1 - exp(-tau_i)) exp(-(acc[ray] + sum_{j<i} tau_j)) of packed samples, and acc + sum tau per ray.
std::vector<torch::Tensor> composite_forward(torch::Tensor tau, torch::Tensor ray, torch::Tensor acc) {
  tau = tau.contiguous(); ray = ray.contiguous();
  const int64_t n = tau.size(0);
  auto w = torch::empty_like(tau);
  auto acc_new = acc.clone().contiguous();
  const auto seg = segments(ray.data_ptr<int64_t>(), n);
  AT_DISPATCH_FLOATING_TYPES(tau.scalar_type(), "composite_forward", [&] {
    const scalar_t* tp = tau.data_ptr<scalar_t>();
    const int64_t* rp = ray.data_ptr<int64_t>();
    scalar_t* wp = w.data_ptr<scalar_t>();
    scalar_t* ap = acc_new.data_ptr<scalar_t>();
    at::parallel_for(0, int64_t(seg.size()) - 1, 64, [&](int64_t begin, int64_t end) {
      for (int64_t s = begin; s < end; ++s) {
        const scalar_t a = ap[rp[seg[s]]];
        scalar_t cum = 0;
        for (int64_t i = seg[s]; i < seg[s + 1]; ++i) {
          cum += tp[i];
          wp[i] = (scalar_t(1) - std::exp(-tp[i])) * std::exp(-((a + cum) - tp[i]));
        }
        ap[rp[seg[s]]] = a + cum;
      }
    });
  });
  return {w, acc_new};
}

// Gradients of composite_forward: d tau_i = g_i exp(-tau_i) T_i - sum_{k>i} g_k w_k + g_acc[ray],
// d acc[ray] = g_acc[ray] - sum_k g_k w_k (rays without samples pass g_acc through).
std::vector<torch::Tensor> composite_backward(torch::Tensor grad_w, torch::Tensor grad_acc, torch::Tensor tau,
                                              torch::Tensor ray, torch::Tensor w, torch::Tensor acc) {
  grad_w = grad_w.contiguous(); grad_acc = grad_acc.contiguous(); tau = tau.contiguous();
  ray = ray.contiguous(); w = w.contiguous(); acc = acc.contiguous();
  const int64_t n = tau.size(0);
  auto g_tau = torch::empty_like(tau);
  auto g_acc = grad_acc.clone();
  const auto seg = segments(ray.data_ptr<int64_t>(), n);
  AT_DISPATCH_FLOATING_TYPES(tau.scalar_type(), "composite_backward", [&] {
    const scalar_t* gw = grad_w.data_ptr<scalar_t>();
    const scalar_t* ga = grad_acc.data_ptr<scalar_t>();
    const scalar_t* tp = tau.data_ptr<scalar_t>();
    const scalar_t* wp = w.data_ptr<scalar_t>();
    const scalar_t* ap = acc.data_ptr<scalar_t>();
    const int64_t* rp = ray.data_ptr<int64_t>();
    scalar_t* gt = g_tau.data_ptr<scalar_t>();
    scalar_t* gap = g_acc.data_ptr<scalar_t>();
    at::parallel_for(0, int64_t(seg.size()) - 1, 64, [&](int64_t begin, int64_t end) {
      for (int64_t s = begin; s < end; ++s) {
        const int64_t rr = rp[seg[s]];
        const scalar_t a = ap[rr], g_out = ga[rr];
        // T_i from the prefix sums; then a suffix sum of g_k w_k.
        scalar_t cum = 0;
        for (int64_t i = seg[s]; i < seg[s + 1]; ++i) {
          cum += tp[i];
          gt[i] = gw[i] * std::exp(-tp[i]) * std::exp(-((a + cum) - tp[i]));
        }
        scalar_t suffix = 0;
        for (int64_t i = seg[s + 1] - 1; i >= seg[s]; --i) {
          gt[i] += g_out - suffix;
          suffix += gw[i] * wp[i];
        }
        gap[rr] = g_out - suffix;
      }
    });
  });
  return {g_tau, g_acc};
}
