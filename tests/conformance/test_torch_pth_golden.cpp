// The golden .pth checkpoints (written by torch.save) through read_pth: key sets and dtypes as
// spec §1.2 (umT5 encoder) and §2.5 (Wan2.1 VAE) describe them, shapes consistent with each
// other, and, where python3 is available, raw record bytes cross-checked by an independent
// reader (Python's zipfile plus a pickle loader that only records what it is asked to build).
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <sstream>

#include "io/torch_pth.h"
#include "test_support.h"

namespace wanrt {
namespace {

constexpr const char* kT5File = "Wan2.2-I2V-tiny/models_t5_umt5-xxl-enc-bf16.pth";
constexpr const char* kVaeFile = "Wan2.2-I2V-tiny/Wan2.1_VAE.pth";

std::set<std::string> name_set(const TensorStore& store) {
  const auto names = store.names();
  return {names.begin(), names.end()};
}

void expect_same_names(const std::set<std::string>& actual, const std::set<std::string>& expected) {
  for (const auto& name : expected) EXPECT_TRUE(actual.count(name)) << "missing " << name;
  for (const auto& name : actual) EXPECT_TRUE(expected.count(name)) << "unexpected " << name;
}

// Spec §1.2: per block i, ten tensors; plus the token embedding and the final norm.
std::set<std::string> t5_names(int64_t layers) {
  std::set<std::string> names = {"token_embedding.weight", "norm.weight"};
  for (int64_t i = 0; i < layers; ++i) {
    const std::string block = "blocks." + std::to_string(i) + ".";
    for (const char* suffix : {"norm1.weight", "attn.q.weight", "attn.k.weight", "attn.v.weight",
                               "attn.o.weight", "norm2.weight", "ffn.gate.0.weight",
                               "ffn.fc1.weight", "ffn.fc2.weight",
                               "pos_embedding.embedding.weight"})
      names.insert(block + suffix);
  }
  return names;
}

TEST(TorchPthGolden, T5EncoderStateDict) {
  WANRT_REQUIRE_GOLDEN(dir);
  const std::string path = dir + "/" + kT5File;
  const TensorStore store = read_pth(path);

  // The layer count is whatever the "blocks.<i>." keys say.
  int64_t layers = 0;
  const std::string block_prefix = "blocks.";
  for (const auto& name : store.names()) {
    if (!name.starts_with(block_prefix)) continue;
    const size_t digits_end = name.find('.', block_prefix.size());
    const std::string index = name.substr(block_prefix.size(), digits_end - block_prefix.size());
    ASSERT_TRUE(!index.empty() && index.find_first_not_of("0123456789") == std::string::npos) << name;
    layers = std::max<int64_t>(layers, std::stoll(index) + 1);
  }
  ASSERT_GT(layers, 0) << "no blocks.<i>. keys in " << path;
  expect_same_names(name_set(store), t5_names(layers));

  for (const auto& name : store.names()) {
    const Tensor& t = store.get(name);
    EXPECT_EQ(t.dtype(), DType::BF16) << name;
    EXPECT_TRUE(t.is_contiguous() && t.numel() > 0) << name;
  }
  // The shapes must agree with each other (spec §1.2), whatever the model's size.
  const Tensor& embedding = store.get("token_embedding.weight");
  ASSERT_EQ(embedding.dim(), 2);
  const int64_t dim = embedding.size(1);
  store.get("norm.weight", {dim});
  const int64_t dim_attn = store.get("blocks.0.attn.q.weight").size(0);
  const int64_t dim_ffn = store.get("blocks.0.ffn.fc1.weight").size(0);
  const Shape bias_table = store.get("blocks.0.pos_embedding.embedding.weight").shape();
  ASSERT_EQ(bias_table.size(), 2u);
  EXPECT_EQ(dim_attn % bias_table[1], 0) << "attention width not a multiple of the head count";
  for (int64_t i = 0; i < layers; ++i) {
    const std::string block = "blocks." + std::to_string(i) + ".";
    EXPECT_NO_THROW({
      store.get(block + "norm1.weight", {dim});
      store.get(block + "norm2.weight", {dim});
      for (const char* projection : {"attn.q.weight", "attn.k.weight", "attn.v.weight"})
        store.get(block + projection, {dim_attn, dim});
      store.get(block + "attn.o.weight", {dim, dim_attn});
      store.get(block + "ffn.gate.0.weight", {dim_ffn, dim});
      store.get(block + "ffn.fc1.weight", {dim_ffn, dim});
      store.get(block + "ffn.fc2.weight", {dim, dim_ffn});
      store.get(block + "pos_embedding.embedding.weight", bias_table);
    });
  }
}

// Spec §2.5, built from its block patterns. Stage layouts, one letter per stage index:
// R residual block, S residual block with a 1x1x1 shortcut (in != out), d 2-D resample,
// D resample with a temporal conv.
std::set<std::string> vae_names() {
  std::set<std::string> names;
  const auto add = [&](const std::string& prefix, std::initializer_list<const char*> suffixes) {
    for (const char* suffix : suffixes) names.insert(prefix + suffix);
  };
  const auto stage = [&](const std::string& prefix, char kind) {
    if (kind == 'R' || kind == 'S')
      add(prefix, {".residual.0.gamma", ".residual.2.weight", ".residual.2.bias",
                   ".residual.3.gamma", ".residual.6.weight", ".residual.6.bias"});
    if (kind == 'S') add(prefix, {".shortcut.weight", ".shortcut.bias"});
    if (kind == 'd' || kind == 'D') add(prefix, {".resample.1.weight", ".resample.1.bias"});
    if (kind == 'D') add(prefix, {".time_conv.weight", ".time_conv.bias"});
    if (kind == 'A')
      add(prefix, {".norm.gamma", ".to_qkv.weight", ".to_qkv.bias", ".proj.weight", ".proj.bias"});
  };
  const auto stages = [&](const std::string& prefix, const std::string& layout) {
    for (size_t i = 0; i < layout.size(); ++i) stage(prefix + "." + std::to_string(i), layout[i]);
  };
  for (const std::string part : {"encoder", "decoder"}) {
    add(part, {".conv1.weight", ".conv1.bias", ".head.0.gamma", ".head.2.weight", ".head.2.bias"});
    stages(part + ".middle", "RAR");
  }
  stages("encoder.downsamples", "RRdSRDSRDRR");
  stages("decoder.upsamples", "RRRDSRRDRRRdRRR");
  add("", {"conv1.weight", "conv1.bias", "conv2.weight", "conv2.bias"});
  return names;
}

TEST(TorchPthGolden, Wan21VaeStateDict) {
  WANRT_REQUIRE_GOLDEN(dir);
  const std::string path = dir + "/" + kVaeFile;
  const TensorStore store = read_pth(path);
  const auto expected = vae_names();
  ASSERT_EQ(expected.size(), 194u) << "the spec's list has 194 tensors";
  EXPECT_EQ(store.size(), 194u);
  expect_same_names(name_set(store), expected);

  for (const auto& name : store.names()) {
    const Tensor& t = store.get(name);
    EXPECT_EQ(t.dtype(), DType::F32) << name;
    EXPECT_TRUE(t.is_contiguous() && t.numel() > 0) << name;
    const std::string stem = name.substr(0, name.rfind('.'));
    if (name.ends_with(".bias") && store.contains(stem + ".weight")) {
      EXPECT_EQ(t.shape(), Shape{store.get(stem + ".weight").size(0)}) << name;
    }
    if (name.ends_with(".gamma")) {
      const bool attention = name.find(".norm.gamma") != std::string::npos;
      EXPECT_EQ(t.dim(), attention ? 3 : 4) << name;
      EXPECT_EQ(t.numel(), t.size(0)) << name << " should be [C, 1, 1(, 1)]";
    }
    const bool conv2d = name.find("resample.1.weight") != std::string::npos ||
                        name.find("to_qkv.weight") != std::string::npos ||
                        name.find("proj.weight") != std::string::npos;
    if (name.ends_with(".weight")) {
      EXPECT_EQ(t.dim(), conv2d ? 4 : 5) << name;
    }
  }
}

// An independent reader: Python's zipfile for the container, and pickle with stand-ins that
// record the arguments of each tensor rebuild instead of building anything. It prints, per
// tensor: name, storage class, offset, size, stride, and the hex of its first bytes.
constexpr const char* kPythonReader = R"PY(
import collections, io, pickle, sys, zipfile
archive = zipfile.ZipFile(sys.argv[1])
prefix = archive.namelist()[0].split('/')[0] + '/'
itemsize = {'BFloat16Storage': 2, 'HalfStorage': 2, 'FloatStorage': 4, 'DoubleStorage': 8,
            'LongStorage': 8, 'IntStorage': 4, 'ByteStorage': 1, 'BoolStorage': 1}
class Loader(pickle.Unpickler):
    def find_class(self, module, name):
        if (module, name) == ('collections', 'OrderedDict'):
            return collections.OrderedDict
        if (module, name) == ('torch._utils', '_rebuild_tensor_v2'):
            return lambda storage, offset, size, stride, *rest: (storage, offset, size, stride)
        if module == 'torch' and name.endswith('Storage'):
            return name
        raise pickle.UnpicklingError('unexpected global %s.%s' % (module, name))
    def persistent_load(self, pid):
        return (pid[1], pid[2])
state = Loader(io.BytesIO(archive.read(prefix + 'data.pkl'))).load()
for name, ((kind, key), offset, size, stride) in state.items():
    data = archive.read(prefix + 'data/' + key)
    start = offset * itemsize[kind]
    print(name, kind, offset, ','.join(map(str, size)) or '-', ','.join(map(str, stride)) or '-',
          data[start:start + 64].hex() or '-')
)PY";

std::string hex_prefix(const Tensor& t) {
  static constexpr char kDigits[] = "0123456789abcdef";
  const auto* bytes = static_cast<const unsigned char*>(t.raw());
  std::string hex;
  for (size_t i = 0; i < t.nbytes() && i < 64; ++i) {
    hex.push_back(kDigits[bytes[i] >> 4]);
    hex.push_back(kDigits[bytes[i] & 15]);
  }
  return hex.empty() ? "-" : hex;
}

std::string dims(const Shape& shape) {
  std::string text;
  for (size_t i = 0; i < shape.size(); ++i) text += (i ? "," : "") + std::to_string(shape[i]);
  return text.empty() ? "-" : text;
}

TEST(TorchPthGolden, RecordsMatchAnIndependentReader) {
  WANRT_REQUIRE_GOLDEN(dir);
  if (std::system("python3 -c 'import zipfile, pickle' >/dev/null 2>&1") != 0)
    GTEST_SKIP() << "SKIPPED: no python3 with zipfile for the cross-check";
  const std::string script = testing::temp_dir() + "/reader.py";
  std::ofstream(script) << kPythonReader;
  const std::map<std::string, DType> storage_dtype = {
      {"BFloat16Storage", DType::BF16}, {"FloatStorage", DType::F32}, {"HalfStorage", DType::F16}};

  for (const char* file : {kT5File, kVaeFile}) {
    const std::string path = dir + "/" + file;
    SCOPED_TRACE(path);
    const TensorStore store = read_pth(path);
    FILE* pipe = ::popen(("python3 '" + script + "' '" + path + "'").c_str(), "r");
    ASSERT_NE(pipe, nullptr);
    std::string output;
    char buffer[4096];
    while (size_t n = std::fread(buffer, 1, sizeof buffer, pipe)) output.append(buffer, n);
    ASSERT_EQ(::pclose(pipe), 0) << "the Python reader failed on " << path;

    std::istringstream lines(output);
    size_t checked = 0;
    std::string name, kind, offset, size, stride, hex;
    while (lines >> name >> kind >> offset >> size >> stride >> hex) {
      SCOPED_TRACE(name);
      ASSERT_TRUE(store.contains(name));
      const Tensor& t = store.get(name);
      ASSERT_TRUE(storage_dtype.count(kind)) << kind;
      EXPECT_EQ(t.dtype(), storage_dtype.at(kind));
      EXPECT_EQ(dims(t.shape()), size);
      if (stride == dims(contiguous_strides(t.shape()))) {
        EXPECT_EQ(hex_prefix(t), hex.substr(0, std::min(hex.size(), 2 * t.nbytes())));
      }
      ++checked;
    }
    EXPECT_EQ(checked, store.size());
  }
}

}  // namespace
}  // namespace wanrt
