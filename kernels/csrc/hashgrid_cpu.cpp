// Multiresolution hash-grid encoding on the CPU: forward and table gradient, fused per point and level.
// Same convention as dreamsmith.kernels.hashgrid.hash_encode_reference (see that module's docstring):
// level l has R_l cells per axis over [0, 1]^3; cell c = min(floor(x R_l), R_l - 1), fractions t = x R_l - c;
// vertex (i, j, k) is row i + j (R+1) + k (R+1)^2 when (R+1)^3 <= T, else (i ^ j*2654435761 ^ k*805459861) mod T
// in uint32 arithmetic; corner c has offsets (c>>2 & 1, c>>1 & 1, c & 1); the output is level-major [N, L*F].
#include <torch/extension.h>
#include <ATen/Parallel.h>

#include <cmath>
#include <cstdint>
#include <vector>

namespace {

struct Level {
  float res;        // cells per axis (as the reference: float32 arithmetic)
  int64_t res_i;
  bool dense;
  uint32_t m[3];    // dense strides or hash primes
};

std::vector<Level> make_levels(const std::vector<int64_t>& res, int64_t log2_table) {
  std::vector<Level> lv;
  const int64_t t_size = int64_t(1) << log2_table;
  for (int64_t r : res) {
    Level l;
    l.res = float(r);
    l.res_i = r;
    l.dense = (r + 1) * (r + 1) * (r + 1) <= t_size;
    if (l.dense) {
      l.m[0] = 1u; l.m[1] = uint32_t(r + 1); l.m[2] = uint32_t((r + 1) * (r + 1));
    } else {
      l.m[0] = 1u; l.m[1] = 2654435761u; l.m[2] = 805459861u;
    }
    lv.push_back(l);
  }
  return lv;
}

// Rows and trilinear weights of the 8 corners of point p at one level.
template <typename scalar_t>
inline void corners(const scalar_t* p, const Level& l, uint32_t mask, uint32_t rows[8], scalar_t w[8]) {
  using acc_t = typename std::conditional<std::is_same<scalar_t, double>::value, double, float>::type;
  uint32_t lo[3], hi[3];
  acc_t fr[3];
  for (int a = 0; a < 3; ++a) {
    acc_t v = acc_t(p[a]);
    v = v < acc_t(0) ? acc_t(0) : (v > acc_t(1) ? acc_t(1) : v);
    const acc_t s = v * acc_t(l.res);
    acc_t c = std::floor(s);
    if (c > acc_t(l.res) - acc_t(1)) c = acc_t(l.res) - acc_t(1);
    fr[a] = s - c;
    const uint32_t ci = uint32_t(int64_t(c));
    lo[a] = ci * l.m[a];
    hi[a] = lo[a] + l.m[a];
  }
  for (int c = 0; c < 8; ++c) {
    const int bx = (c >> 2) & 1, by = (c >> 1) & 1, bz = c & 1;
    const uint32_t tx = bx ? hi[0] : lo[0], ty = by ? hi[1] : lo[1], tz = bz ? hi[2] : lo[2];
    rows[c] = l.dense ? (tx + ty + tz) : ((tx ^ ty ^ tz) & mask);
    const acc_t wx = bx ? fr[0] : acc_t(1) - fr[0];
    const acc_t wy = by ? fr[1] : acc_t(1) - fr[1];
    const acc_t wz = bz ? fr[2] : acc_t(1) - fr[2];
    w[c] = scalar_t((wx * wy) * wz);
  }
}

void check(const torch::Tensor& x, const torch::Tensor& table) {
  TORCH_CHECK(x.device().is_cpu() && table.device().is_cpu(), "hashgrid_cpu: CPU tensors only");
  TORCH_CHECK(x.dim() == 2 && x.size(1) == 3, "hashgrid_cpu: x must be [N, 3]");
  TORCH_CHECK(table.dim() == 3, "hashgrid_cpu: table must be [L, T, F]");
  TORCH_CHECK(x.scalar_type() == table.scalar_type(), "hashgrid_cpu: x and table must share a dtype");
}

}  // namespace

torch::Tensor hash_forward(torch::Tensor x, torch::Tensor table, std::vector<int64_t> res, int64_t log2_table) {
  check(x, table);
  x = x.contiguous();
  table = table.contiguous();
  const int64_t n = x.size(0), n_levels = table.size(0), t_size = table.size(1), n_feat = table.size(2);
  TORCH_CHECK(int64_t(res.size()) == n_levels && t_size == (int64_t(1) << log2_table), "hashgrid_cpu: bad levels");
  const auto levels = make_levels(res, log2_table);
  const uint32_t mask = uint32_t(t_size - 1);
  auto out = torch::empty({n, n_levels * n_feat}, table.options());
  AT_DISPATCH_FLOATING_TYPES(table.scalar_type(), "hash_forward", [&] {
    const scalar_t* xp = x.data_ptr<scalar_t>();
    const scalar_t* tp = table.data_ptr<scalar_t>();
    scalar_t* op = out.data_ptr<scalar_t>();
    at::parallel_for(0, n, 2048, [&](int64_t begin, int64_t end) {
      uint32_t rows[8];
      scalar_t w[8];
      for (int64_t i = begin; i < end; ++i) {
        scalar_t* o = op + i * n_levels * n_feat;
        for (int64_t l = 0; l < n_levels; ++l) {
          corners<scalar_t>(xp + 3 * i, levels[l], mask, rows, w);
          const scalar_t* tl = tp + l * t_size * n_feat;
          if (n_feat == 2) {
            scalar_t a0 = 0, a1 = 0;
            for (int c = 0; c < 8; ++c) {
              const scalar_t* r = tl + int64_t(rows[c]) * 2;
              a0 += w[c] * r[0];
              a1 += w[c] * r[1];
            }
            o[l * 2] = a0;
            o[l * 2 + 1] = a1;
          } else {
            for (int64_t f = 0; f < n_feat; ++f) o[l * n_feat + f] = 0;
            for (int c = 0; c < 8; ++c) {
              const scalar_t* r = tl + int64_t(rows[c]) * n_feat;
              for (int64_t f = 0; f < n_feat; ++f) o[l * n_feat + f] += w[c] * r[f];
            }
          }
        }
      }
    });
  });
  return out;
}

// d(loss)/d(table): each level is one task (its rows are written by no other), points in order: deterministic.
torch::Tensor hash_backward_table(torch::Tensor x, torch::Tensor grad_out, std::vector<int64_t> table_shape,
                                  std::vector<int64_t> res, int64_t log2_table) {
  TORCH_CHECK(table_shape.size() == 3, "hashgrid_cpu: table_shape must be [L, T, F]");
  const int64_t n = x.size(0), n_levels = table_shape[0], t_size = table_shape[1], n_feat = table_shape[2];
  grad_out = grad_out.contiguous();
  x = x.to(grad_out.scalar_type()).contiguous();
  TORCH_CHECK(grad_out.dim() == 2 && grad_out.size(0) == n && grad_out.size(1) == n_levels * n_feat,
              "hashgrid_cpu: grad_out must be [N, L*F]");
  const auto levels = make_levels(res, log2_table);
  const uint32_t mask = uint32_t(t_size - 1);
  auto grad = torch::zeros({n_levels, t_size, n_feat}, grad_out.options());
  AT_DISPATCH_FLOATING_TYPES(grad_out.scalar_type(), "hash_backward_table", [&] {
    const scalar_t* xp = x.data_ptr<scalar_t>();
    const scalar_t* gp = grad_out.data_ptr<scalar_t>();
    scalar_t* tp = grad.data_ptr<scalar_t>();
    at::parallel_for(0, n_levels, 1, [&](int64_t begin, int64_t end) {
      uint32_t rows[8];
      scalar_t w[8];
      for (int64_t l = begin; l < end; ++l) {
        scalar_t* tl = tp + l * t_size * n_feat;
        for (int64_t i = 0; i < n; ++i) {
          const scalar_t* g = gp + i * n_levels * n_feat + l * n_feat;
          bool zero = true;
          for (int64_t f = 0; f < n_feat; ++f) zero = zero && g[f] == scalar_t(0);
          if (zero) continue;
          corners<scalar_t>(xp + 3 * i, levels[l], mask, rows, w);
          for (int c = 0; c < 8; ++c) {
            scalar_t* r = tl + int64_t(rows[c]) * n_feat;
            for (int64_t f = 0; f < n_feat; ++f) r[f] += w[c] * g[f];
          }
        }
      }
    });
  });
  return grad;
}
