#include "backends/profiling_ops.h"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <type_traits>
#include <utility>
#include <vector>

#include "core/error.h"

namespace wanrt {
namespace {

using Clock = std::chrono::steady_clock;

double bytes_of(const Tensor& t) { return static_cast<double>(t.nbytes()); }
double bytes_of(const Tensor* t) { return t ? bytes_of(*t) : 0.0; }

// Rows of x seen as a matrix [rows, last axis] (a linear's N).
int64_t leading_rows(const Tensor& t) { return t.dim() == 0 ? 1 : t.numel() / t.size(-1); }

}  // namespace

const char* op_category_name(OpCategory category) {
  switch (category) {
    case OpCategory::Gemm: return "gemm";
    case OpCategory::Attention: return "attention";
    case OpCategory::Norm: return "norm";
    case OpCategory::Elementwise: return "elementwise";
    case OpCategory::Rope: return "rope";
    case OpCategory::Layout: return "layout";
    case OpCategory::Video: return "video";
    case OpCategory::Memory: return "memory";
    case OpCategory::Collective: return "collective";
  }
  return "?";
}

OpStats& OpStats::operator+=(const OpStats& other) {
  calls += other.calls;
  seconds += other.seconds;
  flops += other.flops;
  bytes += other.bytes;
  return *this;
}

ProfilingOps::ProfilingOps(Ops& inner, std::function<void()> sync)
    : inner_(inner), sync_(std::move(sync)) {
  WANRT_CHECK(sync_ != nullptr, "ProfilingOps: the sync function is empty; pass one that waits "
              "for the backend (a no-op lambda for the CPU backend)");
}

void ProfilingOps::reset() {
  by_op_.clear();
  by_shape_.clear();
}

template <typename Call, typename CostFn>
auto ProfilingOps::measure(const char* op, OpCategory category, CostFn&& cost_fn, Call&& call,
                           bool count_output) {
  using Result = decltype(call());
  if (!enabled_) return call();
  const Cost cost = cost_fn();  // before the call: in-place ops change their operand
  sync_();                      // nothing queued earlier may count against this op
  const auto start = Clock::now();
  if constexpr (std::is_void_v<Result>) {
    call();
    sync_();
    record(op, category, std::chrono::duration<double>(Clock::now() - start).count(), cost, 0);
  } else {
    Result out = call();
    sync_();
    record(op, category, std::chrono::duration<double>(Clock::now() - start).count(), cost,
           count_output ? bytes_of(out) : 0.0);
    return out;
  }
}

void ProfilingOps::record(const char* op, OpCategory category, double seconds, const Cost& cost,
                          double output_bytes) {
  OpStats one;
  one.calls = 1;
  one.seconds = seconds;
  one.flops = cost.flops;
  one.bytes = cost.input_bytes + output_bytes;
  by_op_[op] += one;
  op_category_[op] = category;
  if (!cost.shape_key.empty()) by_shape_[cost.shape_key] += one;
}

OpCategory ProfilingOps::category_of(const std::string& op) const {
  const auto found = op_category_.find(op);
  WANRT_CHECK(found != op_category_.end(), "ProfilingOps: no op named '", op, "' was recorded");
  return found->second;
}

OpStats ProfilingOps::category(OpCategory category) const {
  OpStats sum;
  for (const auto& [op, stats] : by_op_)
    if (op_category_.at(op) == category) sum += stats;
  return sum;
}

OpStats ProfilingOps::total() const {
  OpStats sum;
  for (const auto& entry : by_op_) sum += entry.second;
  return sum;
}

// ---- memory ----

Tensor ProfilingOps::upload(const Tensor& host) {
  return measure("upload", OpCategory::Memory, [&] { return Cost{0, bytes_of(host), {}}; },
                 [&] { return inner_.upload(host); }, /*count_output=*/false);
}

Tensor ProfilingOps::upload_weight(const Tensor& host) {
  // The host bytes read are what the transfer costs; the device copy may be narrower (bf16).
  return measure("upload_weight", OpCategory::Memory, [&] { return Cost{0, bytes_of(host), {}}; },
                 [&] { return inner_.upload_weight(host); }, /*count_output=*/false);
}

Tensor ProfilingOps::quantize_weight(const Tensor& host, DType codes) {
  return measure("quantize_weight", OpCategory::Memory, [&] { return Cost{0, bytes_of(host), {}}; },
                 [&] { return inner_.quantize_weight(host, codes); }, /*count_output=*/false);
}

Tensor ProfilingOps::download(const Tensor& tensor) {
  // Counted as the host bytes written (the result), not the device bytes as well.
  return measure("download", OpCategory::Memory, [] { return Cost{}; },
                 [&] { return inner_.download(tensor); });
}

Tensor ProfilingOps::zeros(Shape shape) {
  return measure("zeros", OpCategory::Memory, [] { return Cost{}; },
                 [&] { return inner_.zeros(std::move(shape)); });
}

// ---- dense algebra ----

Tensor ProfilingOps::linear(const Tensor& x, const Tensor& weight, const Tensor* bias,
                            const LinearOptions& options) {
  return measure(
      "linear", OpCategory::Gemm,
      [&] {
        const int64_t n = leading_rows(x), k = x.dim() ? x.size(-1) : 1, m = weight.size(0);
        return Cost{2.0 * static_cast<double>(n) * static_cast<double>(m) * static_cast<double>(k),
                    bytes_of(x) + bytes_of(weight) + bytes_of(bias),
                    str_cat("linear N=", n, " K=", k, " M=", m,
                            options.full_precision ? " (fp32)" : "")};
      },
      [&] { return inner_.linear(x, weight, bias, options); });
}

// ---- normalisation ----

Tensor ProfilingOps::layer_norm(const Tensor& x, float eps, const Tensor* weight,
                                const Tensor* bias) {
  return measure("layer_norm", OpCategory::Norm,
                 [&] { return Cost{0, bytes_of(x) + bytes_of(weight) + bytes_of(bias), {}}; },
                 [&] { return inner_.layer_norm(x, eps, weight, bias); });
}

Tensor ProfilingOps::layer_norm_modulate(const Tensor& x, const Tensor& shift,
                                         const Tensor& scale, float eps, bool full_precision) {
  return measure("layer_norm_modulate", OpCategory::Norm,
                 [&] { return Cost{0, bytes_of(x) + bytes_of(shift) + bytes_of(scale), {}}; },
                 [&] { return inner_.layer_norm_modulate(x, shift, scale, eps, full_precision); });
}

Tensor ProfilingOps::rms_norm(const Tensor& x, const Tensor& weight, float eps) {
  return measure("rms_norm", OpCategory::Norm,
                 [&] { return Cost{0, bytes_of(x) + bytes_of(weight), {}}; },
                 [&] { return inner_.rms_norm(x, weight, eps); });
}

Tensor ProfilingOps::rms_norm_rope(const Tensor& x, const Tensor& weight, float eps,
                                   const Tensor& table, int64_t heads) {
  // Counted as rope (q/k RMSNorm fused with the rotation): one pass over x, the table once.
  return measure("rms_norm_rope", OpCategory::Rope,
                 [&] { return Cost{0, bytes_of(x) + bytes_of(weight) + bytes_of(table), {}}; },
                 [&] { return inner_.rms_norm_rope(x, weight, eps, table, heads); });
}

// ---- elementwise ----

Tensor ProfilingOps::activation(const Tensor& x, Activation act) {
  return measure("activation", OpCategory::Elementwise, [&] { return Cost{0, bytes_of(x), {}}; },
                 [&] { return inner_.activation(x, act); });
}

Tensor ProfilingOps::add(const Tensor& a, const Tensor& b) {
  return measure("add", OpCategory::Elementwise,
                 [&] { return Cost{0, bytes_of(a) + bytes_of(b), {}}; },
                 [&] { return inner_.add(a, b); });
}

Tensor ProfilingOps::mul(const Tensor& a, const Tensor& b) {
  return measure("mul", OpCategory::Elementwise,
                 [&] { return Cost{0, bytes_of(a) + bytes_of(b), {}}; },
                 [&] { return inner_.mul(a, b); });
}

void ProfilingOps::add_gated_(Tensor& x, const Tensor& y, const Tensor* gate) {
  // x is read and written: counted twice (as it was before the call).
  measure("add_gated_", OpCategory::Elementwise,
          [&] { return Cost{0, 2 * bytes_of(x) + bytes_of(y) + bytes_of(gate), {}}; },
          [&] { inner_.add_gated_(x, y, gate); });
}

// ---- attention ----

void ProfilingOps::rope_(Tensor& x, const Tensor& table) {
  measure("rope_", OpCategory::Rope,
          [&] { return Cost{0, 2 * bytes_of(x) + bytes_of(table), {}}; },
          [&] { inner_.rope_(x, table); });
}

Tensor ProfilingOps::attention(const Tensor& q, const Tensor& k, const Tensor& v,
                               const AttentionOptions& options) {
  return measure(
      "attention", OpCategory::Attention,
      [&] {
        // q [Lq, H, d], k/v [Lk, H, d]; masked keys (index >= kv_len) are skipped work.
        const int64_t lq = q.dim() == 3 ? q.size(0) : 0, heads = q.dim() == 3 ? q.size(1) : 0;
        const int64_t d = q.dim() == 3 ? q.size(2) : 0;
        int64_t lk = k.dim() == 3 ? k.size(0) : 0;
        if (options.kv_len >= 0) lk = std::min(lk, options.kv_len);
        return Cost{4.0 * static_cast<double>(heads) * static_cast<double>(lq) *
                        static_cast<double>(lk) * static_cast<double>(d),
                    bytes_of(q) + bytes_of(k) + bytes_of(v) + bytes_of(options.bias),
                    str_cat("attention Lq=", lq, " Lk=", lk, " H=", heads, " d=", d,
                            options.bias ? " (bias)" : "")};
      },
      [&] { return inner_.attention(q, k, v, options); });
}

Tensor ProfilingOps::embedding(const Tensor& table, const Tensor& ids) {
  // Only the gathered rows are read: the result's size, counted as the output.
  return measure("embedding", OpCategory::Layout, [&] { return Cost{0, bytes_of(ids), {}}; },
                 [&] { return inner_.embedding(table, ids); });
}

// ---- video ----

Tensor ProfilingOps::conv3d(const Tensor& x, const Tensor& weight, const Tensor* bias,
                            const Conv3dOptions& options) {
  if (!enabled_) return inner_.conv3d(x, weight, bias, options);
  return measure_conv(bytes_of(x), weight, bias, options,
                      [&] { return inner_.conv3d(x, weight, bias, options); });
}

// Counted as conv3d (the same FLOPs per output voxel; the input bytes are both parts').
Tensor ProfilingOps::conv3d_after(const Tensor& prefix, const Tensor& x, const Tensor& weight,
                                  const Tensor* bias, const Conv3dOptions& options) {
  if (!enabled_) return inner_.conv3d_after(prefix, x, weight, bias, options);
  return measure_conv(bytes_of(prefix) + bytes_of(x), weight, bias, options,
                      [&] { return inner_.conv3d_after(prefix, x, weight, bias, options); });
}

template <typename Call>
Tensor ProfilingOps::measure_conv(double input_bytes, const Tensor& weight, const Tensor* bias,
                                  const Conv3dOptions& options, Call&& call) {
  const Cost input{0, input_bytes + bytes_of(weight) + bytes_of(bias), {}};
  sync_();
  const auto start = Clock::now();
  Tensor out = call();
  sync_();
  const double seconds = std::chrono::duration<double>(Clock::now() - start).count();
  // The FLOPs need the output's voxel count, so they are computed after the call.
  Cost cost = input;
  if (weight.dim() == 5 && out.dim() == 4) {
    const int64_t voxels = out.numel() / out.size(0);
    const double per_voxel = 2.0 * static_cast<double>(weight.numel());  // Cout·Cin·kt·kh·kw
    cost.flops = per_voxel * static_cast<double>(voxels);
    cost.shape_key = str_cat("conv3d ", weight.size(1), "->", weight.size(0), " k", weight.size(2),
                             "x", weight.size(3), "x", weight.size(4), " s", options.stride_t,
                             "x", options.stride_h, "x", options.stride_w, " out ", out.size(1),
                             "x", out.size(2), "x", out.size(3), " ", dtype_name(out.dtype()));
  }
  record("conv3d", OpCategory::Video, seconds, cost, bytes_of(out));
  return out;
}

Tensor ProfilingOps::channel_rms_norm(const Tensor& x, const Tensor& gamma) {
  return measure("channel_rms_norm", OpCategory::Video,
                 [&] { return Cost{0, bytes_of(x) + bytes_of(gamma), {}}; },
                 [&] { return inner_.channel_rms_norm(x, gamma); });
}

Tensor ProfilingOps::channel_rms_norm_silu(const Tensor& x, const Tensor& gamma) {
  return measure("channel_rms_norm_silu", OpCategory::Video,
                 [&] { return Cost{0, bytes_of(x) + bytes_of(gamma), {}}; },
                 [&] { return inner_.channel_rms_norm_silu(x, gamma); });
}

Tensor ProfilingOps::upsample_nearest_2x(const Tensor& x) {
  return measure("upsample_nearest_2x", OpCategory::Video, [&] { return Cost{0, bytes_of(x), {}}; },
                 [&] { return inner_.upsample_nearest_2x(x); });
}

Tensor ProfilingOps::frames(const Tensor& x, int64_t begin, int64_t end) {
  // Only the selected frames are read: counted as the output.
  return measure("frames", OpCategory::Video, [] { return Cost{}; },
                 [&] { return inner_.frames(x, begin, end); });
}

Tensor ProfilingOps::concat_frames(const Tensor& a, const Tensor& b) {
  return measure("concat_frames", OpCategory::Video,
                 [&] { return Cost{0, bytes_of(a) + bytes_of(b), {}}; },
                 [&] { return inner_.concat_frames(a, b); });
}

Tensor ProfilingOps::transpose(const Tensor& x) {
  return measure("transpose", OpCategory::Video, [&] { return Cost{0, bytes_of(x), {}}; },
                 [&] { return inner_.transpose(x); });
}

// ---- layout ----

Tensor ProfilingOps::patchify(const Tensor& video, int64_t ph, int64_t pw) {
  return measure("patchify", OpCategory::Layout, [&] { return Cost{0, bytes_of(video), {}}; },
                 [&] { return inner_.patchify(video, ph, pw); });
}

Tensor ProfilingOps::unpatchify(const Tensor& tokens, int64_t channels, int64_t frames_, int64_t h,
                                int64_t w, int64_t ph, int64_t pw) {
  return measure("unpatchify", OpCategory::Layout, [&] { return Cost{0, bytes_of(tokens), {}}; },
                 [&] { return inner_.unpatchify(tokens, channels, frames_, h, w, ph, pw); });
}

Tensor ProfilingOps::pad_rows(const Tensor& x, int64_t rows_) {
  return measure("pad_rows", OpCategory::Layout, [&] { return Cost{0, bytes_of(x), {}}; },
                 [&] { return inner_.pad_rows(x, rows_); });
}

Tensor ProfilingOps::concat_rows(const Tensor& a, const Tensor& b) {
  return measure("concat_rows", OpCategory::Layout,
                 [&] { return Cost{0, bytes_of(a) + bytes_of(b), {}}; },
                 [&] { return inner_.concat_rows(a, b); });
}

Tensor ProfilingOps::rows(const Tensor& x, int64_t begin, int64_t end) {
  // Only the selected rows are read: counted as the output.
  return measure("rows", OpCategory::Layout, [] { return Cost{}; },
                 [&] { return inner_.rows(x, begin, end); });
}

// ---- collectives ----

Tensor ProfilingOps::sequence_to_heads(const Tensor& x) {
  return measure("sequence_to_heads", OpCategory::Collective,
                 [&] { return Cost{0, bytes_of(x), {}}; },
                 [&] { return inner_.sequence_to_heads(x); });
}

Tensor ProfilingOps::heads_to_sequence(const Tensor& x) {
  return measure("heads_to_sequence", OpCategory::Collective,
                 [&] { return Cost{0, bytes_of(x), {}}; },
                 [&] { return inner_.heads_to_sequence(x); });
}

Tensor ProfilingOps::all_gather_rows(const Tensor& x) {
  return measure("all_gather_rows", OpCategory::Collective,
                 [&] { return Cost{0, bytes_of(x), {}}; },
                 [&] { return inner_.all_gather_rows(x); });
}

// ---- the report ----

namespace {

struct Row {
  std::string label;
  OpStats stats;
};

// A right-aligned cell of `width` characters after one space: the value, or "-" when absent.
std::string cell(bool present, const char* pattern, double value, int width) {
  char text[64];
  if (present)
    std::snprintf(text, sizeof text, pattern, value);
  else
    std::snprintf(text, sizeof text, "%s", "-");
  char padded[80];
  std::snprintf(padded, sizeof padded, " %*s", width, text);
  return padded;
}

// One table: label | calls | time | % time | TFLOP | TFLOP/s | [% peak] | [% ceiling] | GB/s |
// ms/call. `ceilings` holds one measured ceiling per row (0: none); none at all: no column.
// GB/s is shown for rows without FLOPs (the memory-bound ops).
void print_table(std::ostream& out, const char* label_heading, size_t label_width,
                 const std::vector<Row>& rows, double time_whole, double peak_tflops,
                 const std::vector<double>& ceilings) {
  const bool with_ceiling =
      std::any_of(ceilings.begin(), ceilings.end(), [](double c) { return c > 0; });
  char line[512];
  std::snprintf(line, sizeof line, "  %-*s %8s %10s %8s %10s %8s", static_cast<int>(label_width),
                label_heading, "calls", "time s", "% time", "TFLOP", "TFLOP/s");
  out << line;
  if (peak_tflops > 0) out << "   % peak";
  if (with_ceiling) out << "  % ceil.";
  out << "     GB/s  ms/call\n";
  for (size_t i = 0; i < rows.size(); ++i) {
    const OpStats& s = rows[i].stats;
    const bool has_flops = s.flops > 0;
    std::snprintf(line, sizeof line, "  %-*s %8lld %10.4f", static_cast<int>(label_width),
                  rows[i].label.c_str(), static_cast<long long>(s.calls), s.seconds);
    out << line;
    out << cell(time_whole > 0, "%.1f %%", time_whole > 0 ? 100.0 * s.seconds / time_whole : 0, 8);
    out << cell(has_flops, "%.3f", s.flops * 1e-12, 10);
    out << cell(has_flops, "%.1f", s.tflops_per_second(), 8);
    if (peak_tflops > 0)
      out << cell(has_flops, "%.1f %%", 100.0 * s.tflops_per_second() / peak_tflops, 8);
    if (with_ceiling) {
      const double ceiling = i < ceilings.size() ? ceilings[i] : 0;
      out << cell(has_flops && ceiling > 0, "%.1f %%",
                  ceiling > 0 ? 100.0 * s.tflops_per_second() / ceiling : 0, 8);
    }
    out << cell(!has_flops && s.bytes > 0 && s.seconds > 0, "%.1f", s.gigabytes_per_second(), 8);
    out << cell(s.calls > 0, "%.3f", s.calls > 0 ? 1e3 * s.seconds / static_cast<double>(s.calls) : 0, 8)
        << "\n";
  }
}

bool by_time(const Row& a, const Row& b) { return a.stats.seconds > b.stats.seconds; }

// Keeps the first `max_rows` rows (sorted slowest first) and folds the rest into one.
void fold_tail(std::vector<Row>& rows, std::vector<double>* ceilings, size_t max_rows) {
  if (rows.size() <= max_rows) return;
  Row rest{str_cat("(", rows.size() - max_rows, " more)"), {}};
  for (size_t i = max_rows; i < rows.size(); ++i) rest.stats += rows[i].stats;
  rows.resize(max_rows);
  rows.push_back(rest);
  if (ceilings) {
    ceilings->resize(max_rows);
    ceilings->push_back(0);
  }
}

}  // namespace

void ProfilingOps::print_breakdown(std::ostream& out, const BreakdownOptions& options) const {
  if (!options.title.empty()) out << options.title << "\n";
  const OpStats all = total();
  if (all.calls == 0) {
    out << "  (no ops were recorded: was profiling enabled?)\n";
    return;
  }
  const double time_whole = options.wall_seconds > 0 ? options.wall_seconds : all.seconds;

  std::vector<Row> rows;
  std::vector<double> ceilings;
  for (int c = 0; c < kOpCategoryCount; ++c) {
    const auto cat = static_cast<OpCategory>(c);
    const OpStats stats = category(cat);
    if (stats.calls == 0) continue;
    rows.push_back({op_category_name(cat), stats});
    ceilings.push_back(options.ceiling_tflops[static_cast<size_t>(c)]);
  }
  // Sorting must keep each ceiling with its row.
  std::vector<size_t> order(rows.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = i;
  std::stable_sort(order.begin(), order.end(),
                   [&](size_t a, size_t b) { return by_time(rows[a], rows[b]); });
  std::vector<Row> sorted_rows;
  std::vector<double> sorted_ceilings;
  for (size_t i : order) {
    sorted_rows.push_back(rows[i]);
    sorted_ceilings.push_back(ceilings[i]);
  }
  if (options.wall_seconds > 0) {
    OpStats outside;
    outside.seconds = std::max(0.0, options.wall_seconds - all.seconds);
    sorted_rows.push_back({"outside ops", outside});
    sorted_ceilings.push_back(0);
  }
  OpStats total_row = all;
  if (options.wall_seconds > 0) total_row.seconds = options.wall_seconds;
  sorted_rows.push_back({"total", total_row});
  sorted_ceilings.push_back(0);
  out << " By category:\n";
  print_table(out, "category", 12, sorted_rows, time_whole, options.peak_tflops, sorted_ceilings);
  if (options.wall_seconds > 0)
    out << "  (outside ops: host work between ops, e.g. tables built on the host, plus the "
           "profiler's own syncs)\n";

  if (options.per_op) {
    std::vector<Row> op_rows;
    for (const auto& [op, stats] : by_op_)
      op_rows.push_back({str_cat(op, " [", op_category_name(op_category_.at(op)), "]"), stats});
    std::stable_sort(op_rows.begin(), op_rows.end(), by_time);
    fold_tail(op_rows, nullptr, options.max_rows);
    size_t width = 8;
    for (const Row& row : op_rows) width = std::max(width, row.label.size());
    out << " By op:\n";
    print_table(out, "op", width, op_rows, time_whole, options.peak_tflops, {});
  }
  if (options.per_shape && !by_shape_.empty()) {
    std::vector<Row> shape_rows;
    std::vector<double> shape_ceilings;
    for (const auto& [key, stats] : by_shape_) shape_rows.push_back({key, stats});
    std::stable_sort(shape_rows.begin(), shape_rows.end(), by_time);
    size_t width = 8;
    for (const Row& row : shape_rows) {
      width = std::max(width, row.label.size());
      const OpCategory cat = row.label.starts_with("linear")      ? OpCategory::Gemm
                             : row.label.starts_with("attention") ? OpCategory::Attention
                                                                  : OpCategory::Video;
      shape_ceilings.push_back(options.ceiling_tflops[static_cast<size_t>(cat)]);
    }
    fold_tail(shape_rows, &shape_ceilings, options.max_rows);
    out << " By shape (linear, attention, conv3d):\n";
    print_table(out, "shape", width, shape_rows, time_whole, options.peak_tflops, shape_ceilings);
  }
}

}  // namespace wanrt
