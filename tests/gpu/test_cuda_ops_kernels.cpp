// The CUDA backend's norms, elementwise and video ops against the CPU backend, on fresh random
// inputs in F32 and BF16 (and F16, the VAE path's storage dtype, in the ops that take it), at
// widths from 1 to past the register-cached row limit, with poisoned outputs. The CPU reference
// gets exactly the values the GPU sees (inputs rounded to bf16 or f16 where the GPU reads them
// so), so the tolerances measure the kernels, not the input rounding:
//   F32 results   ≤ 1e-5 relative (float32 vs the reference's double accumulation)
//   BF16 results  ≤ 5e-3 relative (bf16 keeps 8 significant bits: ~2e-3 rms per rounding)
//   F16 results   ≤ 1e-3 relative (f16 keeps 11: ~3e-4 rms per rounding)
#include "gpu_test_support.h"

#ifdef WANRT_HAVE_CUDA
#include <cuda_runtime.h>

#include <cmath>
#include <cstdlib>

#include "backends/cuda/cuda_ops_impl.h"
#endif

namespace wanrt {
namespace {

#ifdef WANRT_HAVE_CUDA

using testing::random_normal;
using testing::relative_error;
using testing::rounded;

constexpr double kF32Tolerance = 1e-5;
constexpr double kBf16Tolerance = 5e-3;
constexpr double kF16Tolerance = 1e-3;

double tolerance(DType result) {
  return result == DType::F32 ? kF32Tolerance : result == DType::F16 ? kF16Tolerance : kBf16Tolerance;
}

class CudaKernelsTest : public testing::GpuTest {
 protected:
  static CudaOps& as_cuda(Ops& ops) { return static_cast<CudaOps&>(ops); }
  CudaOps& gpu() { return as_cuda(*gpu_); }

  // `host` on the device as `dtype`.
  static Tensor to_gpu(Ops& ops, const Tensor& host, DType dtype) {
    return as_cuda(ops).as_dtype(ops.upload(host), dtype);
  }
  Tensor to_gpu(const Tensor& host, DType dtype) { return to_gpu(*gpu_, host, dtype); }

  // Fills freshly freed pool memory with NaN (0xFF bytes are NaN in F32 and BF16), so the next
  // outputs of about that size start poisoned: an element a kernel forgets to write shows up as
  // NaN, which relative_error reports as infinite.
  static void poison(Ops& ops, size_t bytes) {
    CudaOps& cuda_ops = as_cuda(ops);
    Tensor block = cuda_ops.empty(DType::U8, {static_cast<int64_t>(2 * bytes + (1 << 20))});
    ASSERT_EQ(cudaMemsetAsync(block.raw_mut(), 0xFF, block.nbytes(), cuda_ops.stream()), cudaSuccess);
  }
  void poison(size_t bytes) { poison(*gpu_, bytes); }
  static size_t bytes_of(const Shape& shape, DType dtype) {
    return static_cast<size_t>(shape_numel(shape)) * dtype_size(dtype);
  }
};

const DType kFloatTypes[] = {DType::F32, DType::BF16};
// The dtypes of the VAE path (cuda_video.h): the video ops, activation and add also take F16.
const DType kVideoTypes[] = {DType::F32, DType::BF16, DType::F16};

// The dtype two video operands meet in: F32, then F16, then BF16 (cuda_video.h).
DType promoted(DType a, DType b) {
  if (a == DType::F32 || b == DType::F32) return DType::F32;
  return a == DType::F16 || b == DType::F16 ? DType::F16 : DType::BF16;
}

// The poisoning above must actually reach new allocations, or the other tests could not see
// unwritten outputs.
TEST_F(CudaKernelsTest, PoisonReachesNewOutputs) {
  WANRT_REQUIRE_GPU();
  for (int64_t n : {1, 1000, 1 << 20}) {
    poison(static_cast<size_t>(n) * 4);
    const Tensor fresh = gpu().empty(DType::F32, {n});
    const Tensor host = gpu().download(fresh);
    int64_t nans = 0;
    for (float v : host.floats()) nans += std::isnan(v) ? 1 : 0;
    EXPECT_EQ(nans, n) << "poisoned pool memory did not reach a new allocation of " << n << " floats";
  }
}

// ---- normalisation ----

TEST_F(CudaKernelsTest, LayerNormModulateAndRmsNormMatchCpuAtAllWidths) {
  WANRT_REQUIRE_GPU();
  const float eps = 1e-6f;
  // 5120 / 4096: the DiT and T5; 5121 and the odd ones: no 16-byte vectors; 33,000 and 9001:
  // past the register-cached limits (vectorised / scalar).
  for (const int64_t features : {1, 2, 3, 8, 31, 64, 129, 1000, 4096, 5120, 5121, 5124, 9001, 33000}) {
    const int64_t rows = features >= 4096 ? 3 : 7;
    const Tensor x = random_normal({rows, features}, rng_, 2.0f);
    const Tensor w = random_normal({features}, rng_), b = random_normal({features}, rng_);
    const Tensor shift = random_normal({features}, rng_), scale = random_normal({features}, rng_, 0.3f);
    const Tensor w_gpu = to_gpu(w, DType::F32), b_gpu = to_gpu(b, DType::F32);
    const Tensor shift_gpu = to_gpu(shift, DType::F32), scale_gpu = to_gpu(scale, DType::F32);
    for (const DType in : kFloatTypes) {
      SCOPED_TRACE(::testing::Message() << "features " << features << ", input " << dtype_name(in));
      const Tensor x_ref = rounded(x, in);
      const Tensor x_gpu = to_gpu(x, in);
      const size_t out_bytes = bytes_of(x.shape(), DType::F32);
      // The bf16 rounding of the normalised value (x BF16, before the gain or modulation) is a
      // second bf16 rounding: bf16 tolerance even for an F32 result.
      const double rounded_tolerance = in == DType::BF16 ? kBf16Tolerance : kF32Tolerance;

      poison(out_bytes);
      Tensor y = gpu().layer_norm(x_gpu, eps, &w_gpu, &b_gpu);
      EXPECT_EQ(y.dtype(), DType::BF16);
      EXPECT_LT(relative_error(gpu().download(y), cpu_->layer_norm(x_ref, eps, &w, &b)), kBf16Tolerance);
      poison(out_bytes);
      y = gpu().layer_norm(x_gpu, eps, nullptr, nullptr);
      EXPECT_LT(relative_error(gpu().download(y), cpu_->layer_norm(x_ref, eps, nullptr, nullptr)), kBf16Tolerance);

      const Tensor mod_ref = cpu_->layer_norm_modulate(x_ref, shift, scale, eps);
      poison(out_bytes);
      y = gpu().layer_norm_modulate(x_gpu, shift_gpu, scale_gpu, eps, false);
      EXPECT_EQ(y.dtype(), DType::BF16);
      EXPECT_LT(relative_error(gpu().download(y), mod_ref), kBf16Tolerance);
      poison(out_bytes);
      y = gpu().layer_norm_modulate(x_gpu, shift_gpu, scale_gpu, eps, true);
      EXPECT_EQ(y.dtype(), DType::F32);
      EXPECT_LT(relative_error(gpu().download(y), mod_ref), rounded_tolerance);

      poison(out_bytes);
      y = gpu().rms_norm(x_gpu, w_gpu, eps);
      EXPECT_EQ(y.dtype(), DType::BF16);
      EXPECT_EQ(y.shape(), x.shape());
      EXPECT_LT(relative_error(gpu().download(y), cpu_->rms_norm(x_ref, w, eps)), kBf16Tolerance);
    }
  }
}

TEST_F(CudaKernelsTest, NormsOfManyRowsAndBf16Vectors) {
  WANRT_REQUIRE_GPU();
  // 3-D input (rows are all leading axes), a BF16 gain, and a row count past one wave.
  const Tensor x = random_normal({50, 41, 64}, rng_);
  const Tensor w = random_normal({64}, rng_);
  const Tensor y = gpu().rms_norm(to_gpu(x, DType::BF16), to_gpu(w, DType::BF16), 1e-5f);
  EXPECT_LT(relative_error(gpu().download(y), cpu_->rms_norm(rounded(x, DType::BF16), rounded(w, DType::BF16), 1e-5f)),
            kBf16Tolerance);
  // No rows at all.
  const Tensor none = gpu().layer_norm(to_gpu(Tensor::zeros(DType::F32, {0, 16}), DType::F32), 1e-6f, nullptr, nullptr);
  EXPECT_EQ(none.shape(), Shape({0, 16}));
}

Tensor random_rope_table(int64_t rows, int64_t head_dim, std::mt19937_64& rng) {
  Tensor table = Tensor::empty(DType::F32, {rows, head_dim / 2, 2});
  std::uniform_real_distribution<double> angle(-M_PI, M_PI);
  for (int64_t i = 0; i < rows * head_dim / 2; ++i) {
    const double a = angle(rng);
    table.data<float>()[2 * i] = static_cast<float>(std::cos(a));
    table.data<float>()[2 * i + 1] = static_cast<float>(std::sin(a));
  }
  return table;
}

TEST_F(CudaKernelsTest, FusedRmsNormRopeMatchesCpuRmsNormThenRope) {
  WANRT_REQUIRE_GPU();
  const float eps = 1e-6f;
  struct Case {
    int64_t tokens, heads, head_dim, table_rows;
  };
  // DiT-like (40 × 128), rows past the table (sequence padding), tiny heads (scalar path:
  // 18 features take no 16-byte vectors), heads narrower than a 16-byte vector or not a
  // multiple of it (per-pair table reads), a table of no rows, and rows past the register limit.
  for (const Case& c : {Case{300, 40, 128, 290}, Case{37, 3, 6, 30}, Case{5, 1, 2, 5}, Case{64, 4, 16, 64},
                        Case{7, 4, 4, 5}, Case{3, 6, 12, 3}, Case{9, 2, 8, 0}, Case{4, 2, 16400, 3},
                        Case{6, 5, 1802, 4}}) {
    const int64_t features = c.heads * c.head_dim;
    const Tensor x = random_normal({c.tokens, features}, rng_, 3.0f), w = random_normal({features}, rng_);
    const Tensor table = random_rope_table(c.table_rows, c.head_dim, rng_);
    const Tensor w_gpu = to_gpu(w, DType::F32), table_gpu = to_gpu(table, DType::F32);
    for (const DType in : kFloatTypes) {
      SCOPED_TRACE(::testing::Message() << c.tokens << "x" << c.heads << "x" << c.head_dim << ", table "
                                      << c.table_rows << ", input " << dtype_name(in));
      const Tensor expected = cpu_->rms_norm_rope(rounded(x, in), w, eps, table, c.heads);
      poison(bytes_of(x.shape(), DType::BF16));
      const Tensor y = gpu().rms_norm_rope(to_gpu(x, in), w_gpu, eps, table_gpu, c.heads);
      EXPECT_EQ(y.dtype(), DType::BF16);
      ASSERT_EQ(y.shape(), Shape({c.tokens, c.heads, c.head_dim}));
      EXPECT_LT(relative_error(gpu().download(y), expected), kBf16Tolerance);
    }
  }
}

// ---- elementwise ----

TEST_F(CudaKernelsTest, ActivationsMatchCpu) {
  WANRT_REQUIRE_GPU();
  for (const int64_t n : {1, 7, 1024, 100003}) {
    const Tensor x = random_normal({n}, rng_, 3.0f);
    for (const DType in : kVideoTypes)
      for (const Activation act : {Activation::None, Activation::Silu, Activation::GeluTanh}) {
        SCOPED_TRACE(::testing::Message() << n << " elements, " << dtype_name(in) << ", activation " << int(act));
        poison(bytes_of(x.shape(), in));
        const Tensor y = gpu().activation(to_gpu(x, in), act);
        EXPECT_EQ(y.dtype(), in);
        EXPECT_LT(relative_error(gpu().download(y), cpu_->activation(rounded(x, in), act)), tolerance(in));
      }
  }
}

TEST_F(CudaKernelsTest, AddAndMulMatchCpuForEveryDtypePair) {
  WANRT_REQUIRE_GPU();
  for (const Shape& shape : {Shape{1}, Shape{7, 13}, Shape{3, 5120}, Shape{2, 3, 10}, Shape{1001}}) {
    const int64_t features = shape.back();
    const Tensor a = random_normal(shape, rng_), b = random_normal(shape, rng_), row = random_normal({features}, rng_);
    for (const DType ta : kVideoTypes)
      for (const DType tb : kVideoTypes) {
        SCOPED_TRACE(::testing::Message() << shape_str(shape) << " " << dtype_name(ta) << " with " << dtype_name(tb));
        const DType out = promoted(ta, tb);
        const Tensor a_ref = rounded(a, ta), b_ref = rounded(b, tb), row_ref = rounded(row, tb);
        const Tensor a_gpu = to_gpu(a, ta), b_gpu = to_gpu(b, tb), row_gpu = to_gpu(row, tb);
        poison(bytes_of(shape, out));
        Tensor y = gpu().add(a_gpu, b_gpu);
        EXPECT_EQ(y.dtype(), out);
        EXPECT_LT(relative_error(gpu().download(y), cpu_->add(a_ref, b_ref)), tolerance(out));
        poison(bytes_of(shape, out));
        y = gpu().add(a_gpu, row_gpu);  // broadcast over rows
        EXPECT_LT(relative_error(gpu().download(y), cpu_->add(a_ref, row_ref)), tolerance(out));
        poison(bytes_of(shape, out));
        if (ta == DType::F16 || tb == DType::F16) {  // F16 is the VAE's; mul is not a VAE op
          EXPECT_THROW(gpu().mul(a_gpu, b_gpu), Error);
          continue;
        }
        y = gpu().mul(a_gpu, b_gpu);
        EXPECT_EQ(y.dtype(), out);
        EXPECT_LT(relative_error(gpu().download(y), cpu_->mul(a_ref, b_ref)), tolerance(out));
      }
  }
}

TEST_F(CudaKernelsTest, GatedResidualAddLeavesAnF32Stream) {
  WANRT_REQUIRE_GPU();
  for (const Shape& shape : {Shape{3, 5}, Shape{33, 5120}, Shape{17, 7}, Shape{4, 12}}) {
    const Tensor x = random_normal(shape, rng_), y = random_normal(shape, rng_), gate = random_normal({shape.back()}, rng_);
    for (const DType tx : kFloatTypes)
      for (const DType ty : kFloatTypes)
        for (const bool gated : {true, false}) {
          SCOPED_TRACE(::testing::Message() << shape_str(shape) << " x " << dtype_name(tx) << ", update "
                                          << dtype_name(ty) << (gated ? ", gated" : ""));
          Tensor expected = rounded(x, tx);
          cpu_->add_gated_(expected, rounded(y, ty), gated ? &gate : nullptr);
          Tensor residual = to_gpu(x, tx);
          const void* before = residual.raw();
          const Tensor gate_gpu = to_gpu(gate, DType::F32);
          gpu().add_gated_(residual, to_gpu(y, ty), gated ? &gate_gpu : nullptr);
          EXPECT_EQ(residual.dtype(), DType::F32);
          if (tx == DType::F32) {
            EXPECT_EQ(residual.raw(), before) << "an F32 residual is updated in place";
          }
          EXPECT_LT(relative_error(gpu().download(residual), expected), kF32Tolerance);
        }
  }
}

TEST_F(CudaKernelsTest, RopeRotatesOnlyTheTableRows) {
  WANRT_REQUIRE_GPU();
  struct Case {
    int64_t tokens, heads, head_dim, table_rows;
  };
  for (const Case& c : {Case{37, 3, 6, 30}, Case{16, 40, 128, 16}, Case{5, 2, 8, 0}, Case{11, 1, 2, 7}}) {
    const Tensor x = random_normal({c.tokens, c.heads, c.head_dim}, rng_);
    const Tensor table = random_rope_table(c.table_rows, c.head_dim, rng_);
    for (const DType in : kFloatTypes) {
      SCOPED_TRACE(::testing::Message() << c.tokens << "x" << c.heads << "x" << c.head_dim << ", table "
                                      << c.table_rows << ", " << dtype_name(in));
      Tensor expected = rounded(x, in);
      cpu_->rope_(expected, table);
      Tensor x_gpu = to_gpu(x, in);
      gpu().rope_(x_gpu, to_gpu(table, DType::F32));
      EXPECT_EQ(x_gpu.dtype(), in);
      const Tensor got = gpu().download(x_gpu);
      EXPECT_LT(relative_error(got, expected), tolerance(in));
      // Rows past the table are untouched, bit for bit.
      const int64_t row = c.heads * c.head_dim;
      const Tensor original = rounded(x, in);
      for (int64_t i = c.table_rows * row; i < c.tokens * row; ++i)
        ASSERT_EQ(got.data<float>()[i], original.data<float>()[i]) << "element " << i;
    }
  }
}

// ---- video ----

struct ConvCase {
  const char* name;
  Shape x, weight;
  Conv3dOptions options;
  bool bias;
};

// The VAE's convolutions at small sizes: causal 3×3×3, the stride-2 downsampler with its
// bottom/right padding, a 1×1×1 shortcut, the (3,1,1) time convs (stride 2 down, causal up),
// and one wider layer.
std::vector<ConvCase> vae_conv_cases() {
  return {
      {"causal 3x3x3", {5, 4, 9, 11}, {7, 5, 3, 3, 3}, {.pad_t_front = 2, .pad_top = 1, .pad_bottom = 1, .pad_left = 1, .pad_right = 1}, true},
      {"first-chunk causal, 1 frame", {4, 1, 6, 5}, {4, 4, 3, 3, 3}, {.pad_t_front = 2, .pad_top = 1, .pad_bottom = 1, .pad_left = 1, .pad_right = 1}, true},
      {"cached chunk (no time pad)", {6, 5, 7, 8}, {6, 6, 3, 3, 3}, {.pad_top = 1, .pad_bottom = 1, .pad_left = 1, .pad_right = 1}, true},
      {"downsample stride 2", {6, 2, 10, 12}, {6, 6, 1, 3, 3}, {.stride_h = 2, .stride_w = 2, .pad_bottom = 1, .pad_right = 1}, true},
      {"1x1x1 shortcut", {8, 3, 5, 7}, {4, 8, 1, 1, 1}, {}, false},
      {"time conv stride 2", {6, 5, 4, 6}, {6, 6, 3, 1, 1}, {.stride_t = 2}, true},
      {"time conv causal up", {4, 3, 5, 4}, {8, 4, 3, 1, 1}, {.pad_t_front = 2}, true},
      {"wider 3x3x3", {32, 3, 24, 40}, {48, 32, 3, 3, 3}, {.pad_t_front = 2, .pad_top = 1, .pad_bottom = 1, .pad_left = 1, .pad_right = 1}, true},
  };
}

// Selects the layout conv3d tries first (cuda_video.cu) for the scope.
class ConvLayoutScope {
 public:
  explicit ConvLayoutScope(bool channels_last) { setenv("WANRT_CONV_LAYOUT", channels_last ? "ndhwc" : "ncdhw", 1); }
  ~ConvLayoutScope() { unsetenv("WANRT_CONV_LAYOUT"); }
};

TEST_F(CudaKernelsTest, Conv3dMatchesCpuInEveryComputeDtypeAndLayout) {
  WANRT_REQUIRE_GPU();
  struct Mode {
    DType conv_dtype;
    bool tf32;
    double tolerance;
  };
  // TF32 keeps 10 mantissa bits: about 5e-4 rms per product, well under 3e-3 after summing.
  // F16 (the default) computes on the f16-rounded operands the reference gets too; only its
  // output rounding (before and after the bias) remains.
  for (const Mode mode : {Mode{DType::F16, false, kF16Tolerance}, Mode{DType::BF16, false, kBf16Tolerance},
                          Mode{DType::F32, false, kF32Tolerance}, Mode{DType::F32, true, 3e-3}}) {
    CudaOptions options;
    options.conv_dtype = mode.conv_dtype;
    options.tf32_convolutions = mode.tf32;
    std::unique_ptr<Ops> ops = make_cuda_ops(options);
    for (const bool channels_last : {false, true}) {
      const ConvLayoutScope layout(channels_last);
      for (const ConvCase& c : vae_conv_cases()) {
        const Tensor x = random_normal(c.x, rng_), w = random_normal(c.weight, rng_, 0.2f),
                     bias = random_normal({c.weight[0]}, rng_);
        for (const DType x_dtype : kVideoTypes)
          for (const DType w_dtype : kVideoTypes) {
            SCOPED_TRACE(::testing::Message() << c.name << ", conv " << dtype_name(mode.conv_dtype)
                                            << (mode.tf32 ? " tf32" : "") << (channels_last ? ", NDHWC" : ", NCDHW")
                                            << ", x " << dtype_name(x_dtype) << ", weight " << dtype_name(w_dtype));
            // What the GPU computes with: x and w rounded to their storage, then to conv_dtype.
            const Tensor x_ref = rounded(rounded(x, x_dtype), mode.conv_dtype);
            const Tensor w_ref = rounded(rounded(w, w_dtype), mode.conv_dtype);
            const Tensor expected = cpu_->conv3d(x_ref, w_ref, c.bias ? &bias : nullptr, c.options);
            const Tensor x_gpu = to_gpu(*ops, x, x_dtype);
            const Tensor w_gpu = to_gpu(*ops, w, w_dtype);
            ASSERT_EQ(w_gpu.dtype(), w_dtype);
            const Tensor bias_gpu = ops->upload(bias);
            poison(*ops, bytes_of(expected.shape(), mode.conv_dtype));
            const Tensor y = ops->conv3d(x_gpu, w_gpu, c.bias ? &bias_gpu : nullptr, c.options);
            EXPECT_EQ(y.dtype(), mode.conv_dtype);
            ASSERT_EQ(y.shape(), expected.shape());
            EXPECT_LT(relative_error(ops->download(y), expected), mode.tolerance);
          }
      }
    }
  }
}

// conv3d_after(prefix, x) = conv3d(concat_frames(prefix, x)): the VAE's cached chunks (one or
// two cached frames, with the causal zeros still missing in front), its causal time conv and
// stride-2 time conv, in every compute dtype and layout; mixed dtypes take the joined copy.
TEST_F(CudaKernelsTest, Conv3dAfterPrefixMatchesConvOfTheConcatenation) {
  WANRT_REQUIRE_GPU();
  const Conv3dOptions spatial{.pad_top = 1, .pad_bottom = 1, .pad_left = 1, .pad_right = 1};
  Conv3dOptions one_zero = spatial;
  one_zero.pad_t_front = 1;
  struct AfterCase {
    const char* name;
    int64_t prefix_frames;
    Shape x, weight;
    Conv3dOptions options;
  };
  const std::vector<AfterCase> cases = {
      {"2 cached + 4 new", 2, {6, 4, 7, 9}, {5, 6, 3, 3, 3}, spatial},
      {"2 cached + 1 new", 2, {6, 1, 5, 8}, {6, 6, 3, 3, 3}, spatial},
      {"1 cached + 1 new, 1 zero frame", 1, {4, 1, 6, 5}, {4, 4, 3, 3, 3}, one_zero},
      {"causal time conv up", 2, {4, 1, 5, 4}, {8, 4, 3, 1, 1}, {}},
      {"time conv stride 2", 1, {6, 4, 4, 6}, {6, 6, 3, 1, 1}, {.stride_t = 2}},
      {"wider", 2, {32, 4, 12, 20}, {48, 32, 3, 3, 3}, spatial},
  };
  struct Mode {
    DType conv_dtype;
    double tolerance;
  };
  for (const Mode mode : {Mode{DType::F16, kF16Tolerance}, Mode{DType::BF16, kBf16Tolerance}, Mode{DType::F32, kF32Tolerance}}) {
    CudaOptions options;
    options.conv_dtype = mode.conv_dtype;
    options.tf32_convolutions = false;
    std::unique_ptr<Ops> ops = make_cuda_ops(options);
    for (const bool channels_last : {true, false}) {
      const ConvLayoutScope layout(channels_last);
      for (const AfterCase& c : cases) {
        const Tensor x = random_normal(c.x, rng_), w = random_normal(c.weight, rng_, 0.2f),
                     bias = random_normal({c.weight[0]}, rng_),
                     prefix = random_normal({c.x[0], c.prefix_frames, c.x[2], c.x[3]}, rng_);
        const Tensor w_gpu = to_gpu(*ops, w, mode.conv_dtype), bias_gpu = ops->upload(bias);
        for (const DType x_dtype : kVideoTypes)
          for (const DType prefix_dtype : {x_dtype, DType::F32}) {
            SCOPED_TRACE(::testing::Message() << c.name << ", conv " << dtype_name(mode.conv_dtype)
                                            << (channels_last ? ", NDHWC" : ", NCDHW") << ", x "
                                            << dtype_name(x_dtype) << ", prefix " << dtype_name(prefix_dtype));
            const Tensor joined = cpu_->concat_frames(rounded(prefix, prefix_dtype), rounded(x, x_dtype));
            const Tensor expected = cpu_->conv3d(rounded(joined, mode.conv_dtype), rounded(w, mode.conv_dtype), &bias,
                                                 c.options);
            poison(*ops, bytes_of(expected.shape(), mode.conv_dtype));
            const Tensor y = ops->conv3d_after(to_gpu(*ops, prefix, prefix_dtype), to_gpu(*ops, x, x_dtype), w_gpu,
                                               &bias_gpu, c.options);
            EXPECT_EQ(y.dtype(), mode.conv_dtype);
            ASSERT_EQ(y.shape(), expected.shape());
            EXPECT_LT(relative_error(ops->download(y), expected), mode.tolerance);
          }
      }
    }
  }
  const Tensor video = to_gpu(random_normal({3, 2, 4, 4}, rng_), DType::F16);
  const Tensor kernel = to_gpu(random_normal({2, 3, 3, 3, 3}, rng_), DType::F16);
  EXPECT_THROW(gpu().conv3d_after(to_gpu(random_normal({3, 2, 4, 5}, rng_), DType::F16), video, kernel, nullptr, {}),
               Error);
  EXPECT_THROW(gpu().conv3d_after(to_gpu(random_normal({2, 2, 4, 4}, rng_), DType::F16), video, kernel, nullptr, {}),
               Error);
}

// upload_weight stores conv kernels (3-D and more) in conv_dtype, whichever it is.
TEST_F(CudaKernelsTest, ConvWeightsUploadInTheConvDtype) {
  WANRT_REQUIRE_GPU();
  EXPECT_EQ(CudaOptions{}.conv_dtype, DType::F16);  // the default (cuda_ops.h says why)
  const Tensor w = random_normal({4, 3, 3, 3, 3}, rng_, 0.2f);
  for (const DType dtype : kVideoTypes) {
    CudaOptions options;
    options.conv_dtype = dtype;
    std::unique_ptr<Ops> ops = make_cuda_ops(options);
    const Tensor stored = ops->upload_weight(w);
    EXPECT_EQ(stored.dtype(), dtype);
    EXPECT_EQ(relative_error(ops->download(stored), rounded(w, dtype)), 0.0) << dtype_name(dtype);
  }
}

TEST_F(CudaKernelsTest, ChannelRmsNormMatchesCpu) {
  WANRT_REQUIRE_GPU();
  // 1100 channels: past the shared-memory tile, the re-reading path.
  for (const Shape& shape : {Shape{1, 1, 1, 1}, Shape{3, 2, 5, 7}, Shape{96, 2, 9, 13}, Shape{384, 1, 6, 11},
                             Shape{1100, 1, 3, 5}, Shape{16, 37}}) {
    Tensor x = random_normal(shape, rng_);
    const int64_t positions = x.numel() / shape[0];
    for (int64_t c = 0; c < shape[0]; ++c) x.data<float>()[c * positions] = 0.0f;  // an all-zero position
    const Tensor gamma = random_normal({shape[0]}, rng_);
    for (const DType in : kVideoTypes) {
      SCOPED_TRACE(::testing::Message() << shape_str(shape) << " " << dtype_name(in));
      poison(bytes_of(shape, in));
      const Tensor y = gpu().channel_rms_norm(to_gpu(x, in), to_gpu(gamma, DType::F32));
      EXPECT_EQ(y.dtype(), in);
      EXPECT_LT(relative_error(gpu().download(y), cpu_->channel_rms_norm(rounded(x, in), gamma)), tolerance(in));
    }
  }
}

// The fused norm + SiLU against the CPU's two ops, with an all-zero position.
TEST_F(CudaKernelsTest, ChannelRmsNormSiluMatchesCpuNormThenSilu) {
  WANRT_REQUIRE_GPU();
  for (const Shape& shape : {Shape{1, 1, 1, 1}, Shape{3, 2, 5, 7}, Shape{96, 2, 9, 13}, Shape{1100, 1, 3, 5}}) {
    Tensor x = random_normal(shape, rng_);
    const int64_t positions = x.numel() / shape[0];
    for (int64_t c = 0; c < shape[0]; ++c) x.data<float>()[c * positions + positions - 1] = 0.0f;
    const Tensor gamma = random_normal({shape[0]}, rng_);
    for (const DType in : kVideoTypes) {
      SCOPED_TRACE(::testing::Message() << shape_str(shape) << " " << dtype_name(in));
      poison(bytes_of(shape, in));
      const Tensor y = gpu().channel_rms_norm_silu(to_gpu(x, in), to_gpu(gamma, DType::F32));
      EXPECT_EQ(y.dtype(), in);
      const Tensor expected = cpu_->activation(cpu_->channel_rms_norm(rounded(x, in), gamma), Activation::Silu);
      EXPECT_LT(relative_error(gpu().download(y), expected), tolerance(in));
    }
  }
}

TEST_F(CudaKernelsTest, UpsampleFramesConcatAndTransposeAreExactCopies) {
  WANRT_REQUIRE_GPU();
  for (const DType in : kVideoTypes) {
    SCOPED_TRACE(dtype_name(in));
    for (const Shape& shape : {Shape{1, 1, 1, 1}, Shape{3, 4, 5, 7}, Shape{2, 3, 90, 160}}) {
      const Tensor x = random_normal(shape, rng_), x_ref = rounded(x, in), x_gpu = to_gpu(x, in);
      poison(4 * bytes_of(shape, in));
      const Tensor up = gpu().upsample_nearest_2x(x_gpu);
      EXPECT_EQ(up.dtype(), in);
      EXPECT_EQ(relative_error(gpu().download(up), cpu_->upsample_nearest_2x(x_ref)), 0.0) << shape_str(shape);
      for (const auto& [begin, end] : {std::pair<int64_t, int64_t>{0, shape[1]}, {shape[1] - 1, shape[1]}, {0, 0}}) {
        poison(bytes_of(shape, in));
        const Tensor f = gpu().frames(x_gpu, begin, end);
        EXPECT_EQ(f.dtype(), in);
        EXPECT_EQ(relative_error(gpu().download(f), cpu_->frames(x_ref, begin, end)), 0.0)
            << shape_str(shape) << " [" << begin << ", " << end << ")";
      }
      const Tensor second = random_normal({shape[0], 2, shape[2], shape[3]}, rng_);
      poison(2 * bytes_of(shape, in));
      const Tensor joined = gpu().concat_frames(x_gpu, to_gpu(second, in));
      EXPECT_EQ(joined.dtype(), in);
      EXPECT_EQ(relative_error(gpu().download(joined), cpu_->concat_frames(x_ref, rounded(second, in))), 0.0);
    }
    // Mixed dtypes meet in the more precise one (F32, then F16, then BF16): exactly.
    const Tensor a = random_normal({2, 1, 3, 3}, rng_), b = random_normal({2, 2, 3, 3}, rng_);
    for (const DType other : kVideoTypes) {
      const Tensor mixed = gpu().concat_frames(to_gpu(a, in), to_gpu(b, other));
      EXPECT_EQ(mixed.dtype(), promoted(in, other));
      EXPECT_EQ(relative_error(gpu().download(mixed), cpu_->concat_frames(rounded(a, in), rounded(b, other))), 0.0)
          << dtype_name(in) << " with " << dtype_name(other);
    }

    for (const Shape& shape : {Shape{1, 1}, Shape{33, 65}, Shape{100, 3}, Shape{3, 100}, Shape{1000, 96}}) {
      const Tensor x = random_normal(shape, rng_);
      poison(bytes_of(shape, in));
      const Tensor t = gpu().transpose(to_gpu(x, in));
      EXPECT_EQ(t.dtype(), in);
      EXPECT_EQ(relative_error(gpu().download(t), cpu_->transpose(rounded(x, in))), 0.0) << shape_str(shape);
    }
  }
}

// ---- errors ----

TEST_F(CudaKernelsTest, BadArgumentsAreClearErrors) {
  WANRT_REQUIRE_GPU();
  const Tensor x = to_gpu(random_normal({4, 12}, rng_), DType::BF16);
  const Tensor w12 = to_gpu(random_normal({12}, rng_), DType::F32), w5 = to_gpu(random_normal({5}, rng_), DType::F32);
  EXPECT_THROW(gpu().rms_norm(x, w5, 1e-6f), Error);
  EXPECT_THROW(gpu().layer_norm_modulate(x, w5, w12, 1e-6f, false), Error);
  EXPECT_THROW(gpu().add(x, w5), Error);
  EXPECT_THROW(gpu().mul(x, w12), Error);
  EXPECT_THROW(gpu().rms_norm_rope(x, w12, 1e-6f, to_gpu(Tensor::zeros(DType::F32, {4, 3, 2}), DType::F32), 5), Error);
  EXPECT_THROW(gpu().rms_norm_rope(x, w12, 1e-6f, to_gpu(Tensor::zeros(DType::F32, {5, 3, 2}), DType::F32), 2), Error);
  Tensor heads = to_gpu(random_normal({4, 2, 6}, rng_), DType::F32);
  EXPECT_THROW(gpu().rope_(heads, to_gpu(Tensor::zeros(DType::F32, {5, 3, 2}), DType::F32)), Error);
  EXPECT_THROW(gpu().rms_norm(random_normal({4, 12}, rng_), w12, 1e-6f), Error);  // a host tensor
  const Tensor video = to_gpu(random_normal({3, 2, 4, 4}, rng_), DType::F32);
  EXPECT_THROW(gpu().conv3d(video, to_gpu(random_normal({2, 4, 1, 1, 1}, rng_), DType::F32), nullptr, {}), Error);
  EXPECT_THROW(gpu().conv3d(video, to_gpu(random_normal({2, 3, 3, 5, 5}, rng_), DType::F32), nullptr, {}), Error);
  EXPECT_THROW(gpu().frames(video, 1, 3), Error);
  EXPECT_THROW(gpu().channel_rms_norm(video, w5), Error);
  // F16 is a dtype of the VAE path only: ops outside it refuse it rather than misread it.
  const Tensor half = to_gpu(random_normal({4, 12}, rng_), DType::F16);
  EXPECT_THROW(gpu().rms_norm(half, w12, 1e-6f), Error);
  EXPECT_THROW(gpu().layer_norm(half, 1e-6f, nullptr, nullptr), Error);
  EXPECT_THROW(gpu().mul(half, half), Error);
  const Tensor half_heads = to_gpu(random_normal({4, 1, 12}, rng_), DType::F16);
  EXPECT_THROW(gpu().attention(half_heads, half_heads, half_heads, {}), Error);
  EXPECT_THROW(gpu().add(half, w5), Error);  // the F16 add checks its broadcast too
}

#else
TEST(CudaKernels, NotBuilt) { GTEST_SKIP() << "SKIPPED: wanrt was built without CUDA (nvcc not found)"; }
#endif

}  // namespace
}  // namespace wanrt
