// Python bindings of the CPU kernels (one extension module for all of them).
#include <torch/extension.h>

#include <vector>

torch::Tensor hash_forward(torch::Tensor x, torch::Tensor table, std::vector<int64_t> res, int64_t log2_table);
torch::Tensor hash_backward_table(torch::Tensor x, torch::Tensor grad_out, std::vector<int64_t> table_shape,
                                  std::vector<int64_t> res, int64_t log2_table);

std::vector<torch::Tensor> march_samples(torch::Tensor o, torch::Tensor d, torch::Tensor near, torch::Tensor far,
                                         torch::Tensor u, double step, int64_t n_samples, torch::Tensor mask,
                                         torch::Tensor bbox);
std::vector<torch::Tensor> composite_forward(torch::Tensor tau, torch::Tensor ray, torch::Tensor acc);
std::vector<torch::Tensor> composite_backward(torch::Tensor grad_w, torch::Tensor grad_acc, torch::Tensor tau,
                                              torch::Tensor ray, torch::Tensor w, torch::Tensor acc);

torch::Tensor raster_keys(torch::Tensor params, torch::Tensor tids, torch::Tensor x0, torch::Tensor y0,
                          torch::Tensor bw, torch::Tensor bh, int64_t batch, int64_t num_faces, int64_t height,
                          int64_t width);

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("hash_forward", &hash_forward, "hash-grid encoding forward (CPU)");
  m.def("hash_backward_table", &hash_backward_table, "hash-grid encoding gradient w.r.t. the table (CPU)");
  m.def("march_samples", &march_samples, "ray marching through an occupancy grid, packed samples (CPU)");
  m.def("composite_forward", &composite_forward, "front-to-back compositing weights of packed samples (CPU)");
  m.def("composite_backward", &composite_backward, "gradients of composite_forward (CPU)");
  m.def("raster_keys", &raster_keys, "triangle visibility: per-pixel depth keys (CPU)");
}
