// PyTorch .pth reading and writing: round trips, the ZIP64 path, zero-copy views, shared
// storages, and malformed archives (each must be a wanrt::Error naming the file and the fault).
#include <cstring>
#include <fstream>
#include <functional>
#include <set>
#include <sstream>

#include "core/mapped_file.h"
#include "io/pickle.h"
#include "io/torch_pth.h"
#include "io/zip_archive.h"
#include "test_support.h"

namespace wanrt {
namespace {

using Bytes = std::vector<std::byte>;
using namespace std::string_literals;

Tensor random_tensor(DType dtype, const Shape& shape, std::mt19937_64& rng) {
  if (dtype_is_float(dtype)) return testing::random_normal(shape, rng).to(dtype);
  Tensor t = Tensor::empty(dtype, shape);
  auto* bytes = static_cast<unsigned char*>(t.raw_mut());
  for (size_t i = 0; i < t.nbytes(); ++i) bytes[i] = static_cast<unsigned char>(rng() | 1);
  return t;
}

bool same_bytes(const Tensor& a, const Tensor& b) {
  return a.dtype() == b.dtype() && a.shape() == b.shape() &&
         std::memcmp(a.raw(), b.raw(), a.nbytes()) == 0;
}

std::string write_file(const std::string& path, const Bytes& bytes) {
  std::ofstream out(path, std::ios::binary);
  out.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
  return path;
}

Bytes to_bytes(const std::string& text) {
  const auto* begin = reinterpret_cast<const std::byte*>(text.data());
  return {begin, begin + text.size()};
}

// Runs `action`, which must throw a wanrt::Error whose message contains every needle.
void expect_error(const std::function<void()>& action, const std::vector<std::string>& needles) {
  try {
    action();
    ADD_FAILURE() << "no error; expected one mentioning '" << needles.back() << "'";
  } catch (const Error& error) {
    const std::string message = error.what();
    for (const auto& needle : needles)
      EXPECT_NE(message.find(needle), std::string::npos)
          << "message lacks '" << needle << "': " << message;
  }
}

// Writes `bytes` to a file and expects read_pth to name that file and `problem`.
void expect_read_error(const Bytes& bytes, const std::string& problem) {
  const std::string path = write_file(testing::temp_dir() + "/bad.pth", bytes);
  expect_error([&] { read_pth(path); }, {path, problem});
}

// A ZIP holding exactly `entries`, written the way torch writes.
Bytes make_zip(const std::vector<std::pair<std::string, std::string>>& entries) {
  std::ostringstream out(std::ios::binary);
  ZipWriter zip(out);
  for (const auto& [name, content] : entries) zip.add(name, std::string_view(content));
  zip.finish();
  return to_bytes(out.str());
}

uint64_t read_le(const Bytes& bytes, size_t at, int width) {
  uint64_t value = 0;
  for (int i = width; i-- > 0;) value = (value << 8) | std::to_integer<uint64_t>(bytes[at + static_cast<size_t>(i)]);
  return value;
}
void write_le(Bytes& bytes, size_t at, int width, uint64_t value) {
  for (int i = 0; i < width; ++i)
    bytes[at + static_cast<size_t>(i)] = static_cast<std::byte>((value >> (8 * i)) & 0xFF);
}

// Offset of the central directory header of entry `name`.
size_t central_header_of(const Bytes& bytes, const std::string& name) {
  for (size_t at = 0; at + 46 + name.size() <= bytes.size(); ++at) {
    if (read_le(bytes, at, 4) == 0x02014b50 && read_le(bytes, at + 28, 2) == name.size() &&
        std::memcmp(bytes.data() + at + 46, name.data(), name.size()) == 0)
      return at;
  }
  ADD_FAILURE() << "no central header for " << name;
  return 0;
}

// Positions of the end records torch always writes: ZIP64 record, locator, classic record.
struct EndRecords {
  size_t zip64, classic;
};
EndRecords end_records(const Bytes& bytes) {
  const size_t classic = bytes.size() - 22;
  EXPECT_EQ(read_le(bytes, classic, 4), 0x06054b50u);
  const size_t zip64 = static_cast<size_t>(read_le(bytes, classic - 20 + 8, 8));
  EXPECT_EQ(read_le(bytes, zip64, 4), 0x06064b50u);
  return {zip64, classic};
}

struct Sample {
  std::vector<std::pair<std::string, Tensor>> tensors;
  std::vector<Tensor> storages;
  std::vector<PickledTensor> views;
};

// A few tensors of odd shapes and the main dtypes, fresh random data each run.
Sample odd_tensors(std::mt19937_64& rng) {
  Sample sample;
  const std::vector<std::tuple<std::string, DType, Shape>> specs = {
      {"blocks.0.attn.q.weight", DType::BF16, {3, 5, 7}},
      {"blocks.0.norm1.weight", DType::F16, {1, 13}},
      {"head.bias", DType::F32, {17}},
      {"counts", DType::I64, {2, 3}},
      {"scale", DType::F32, {}},
      {"nothing", DType::F32, {0, 4}},
      {"conv.weight", DType::BF16, {2, 1, 3, 1}},
      {"ids", DType::I32, {5}},
  };
  for (const auto& [name, dtype, shape] : specs) {
    Tensor t = random_tensor(dtype, shape, rng);
    sample.views.push_back({name, sample.storages.size(), 0, shape, contiguous_strides(shape)});
    sample.storages.push_back(t);
    sample.tensors.emplace_back(name, t);
  }
  return sample;
}

void expect_same_store(const TensorStore& store,
                       const std::vector<std::pair<std::string, Tensor>>& expected) {
  ASSERT_EQ(store.size(), expected.size());
  for (const auto& [name, tensor] : expected) {
    ASSERT_TRUE(store.contains(name)) << name;
    const Tensor& got = store.get(name);
    EXPECT_TRUE(same_bytes(got, tensor)) << name << ": got " << got.describe() << ", wrote "
                                         << tensor.describe();
  }
}

class TorchPth : public ::testing::Test {
 protected:
  void SetUp() override {
    seed_ = testing::test_seed();
    rng_.seed(seed_);
  }
  uint64_t seed_ = 0;
  std::mt19937_64 rng_;
};

TEST_F(TorchPth, RoundTripsOddShapesAndDtypes) {
  SCOPED_TRACE(seed_);
  const Sample sample = odd_tensors(rng_);
  const std::string path = testing::temp_dir() + "/model.pth";
  write_pth(path, sample.tensors);
  const TensorStore store = read_pth(path);
  expect_same_store(store, sample.tensors);
  EXPECT_EQ(store.file_of("head.bias"), path);
}

TEST_F(TorchPth, AnyArchiveNameIsFound) {
  SCOPED_TRACE(seed_);
  const Sample sample = odd_tensors(rng_);
  for (const std::string archive : {"archive", "models_t5_umt5-xxl-enc-bf16", "a", "x.y z"}) {
    SCOPED_TRACE(archive);
    const std::string path = testing::temp_dir() + "/named.pth";
    write_pth(path, sample.tensors, archive);
    const auto file = MappedFile::open(path);
    const ZipArchive zip = ZipArchive::parse(file->bytes(), path);
    ASSERT_FALSE(zip.entries().empty());
    EXPECT_EQ(zip.entries().front().name, archive + "/data.pkl");
    EXPECT_NE(zip.find(archive + "/version"), nullptr);
    EXPECT_NE(zip.find(archive + "/byteorder"), nullptr);
    expect_same_store(read_pth(path), sample.tensors);
  }
}

TEST_F(TorchPth, ForcedZip64FieldsAreHonoured) {
  SCOPED_TRACE(seed_);
  const Sample sample = odd_tensors(rng_);
  PthWriteOptions options;
  options.force_zip64 = true;
  const Bytes bytes = encode_pth(sample.storages, sample.views, options);
  // Every 32-bit size and offset defers to ZIP64, so only the ZIP64 path can read this.
  const EndRecords end = end_records(bytes);
  EXPECT_EQ(read_le(bytes, end.classic + 12, 4), 0xFFFFFFFFu);
  EXPECT_EQ(read_le(bytes, end.classic + 16, 4), 0xFFFFFFFFu);
  const size_t header = central_header_of(bytes, "archive/data/0");
  EXPECT_EQ(read_le(bytes, header + 20, 4), 0xFFFFFFFFu);
  EXPECT_EQ(read_le(bytes, header + 42, 4), 0xFFFFFFFFu);
  expect_same_store(parse_pth(bytes, "zip64.pth", nullptr), sample.tensors);

  // Without the ZIP64 extra field the saturated fields cannot be resolved.
  Bytes broken = bytes;
  const size_t extra_at = header + 46 + std::string("archive/data/0").size();
  write_le(broken, extra_at, 2, 0x7777);  // rename the tag
  expect_error([&] { parse_pth(broken, "zip64.pth", nullptr); }, {"zip64.pth", "ZIP64 extra"});
}

TEST_F(TorchPth, TensorsAreZeroCopyViewsOfAlignedRecords) {
  SCOPED_TRACE(seed_);
  const Sample sample = odd_tensors(rng_);
  const std::string path = testing::temp_dir() + "/aligned.pth";
  write_pth(path, sample.tensors);
  auto file = MappedFile::open(path);
  const ZipArchive zip = ZipArchive::parse(file->bytes(), path);
  for (const ZipEntry& entry : zip.entries()) EXPECT_EQ(entry.data_offset % 64, 0u) << entry.name;

  const TensorStore store = parse_pth(file->bytes(), path, file);
  const auto* begin = file->data();
  const auto* end = begin + file->size();
  for (const auto& [name, tensor] : sample.tensors) {
    if (tensor.numel() == 0) continue;
    const auto* data = static_cast<const std::byte*>(store.get(name).raw());
    EXPECT_TRUE(data >= begin && data + tensor.nbytes() <= end) << name << " is not a view";
    EXPECT_EQ((data - begin) % 64, 0) << name;
  }
  // The views keep the mapping alive on their own.
  const Tensor kept = store.get("head.bias");
  file.reset();
  EXPECT_TRUE(same_bytes(kept, sample.tensors[2].second));
}

TEST_F(TorchPth, SharedStoragesOffsetsAndStrides) {
  SCOPED_TRACE(seed_);
  const Tensor storage = random_tensor(DType::F32, {40}, rng_);
  const float* values = storage.data<float>();
  const std::vector<PickledTensor> views = {
      {"first", 0, 0, {2, 3}, {3, 1}},
      {"middle", 0, 6, {4, 5}, {5, 1}},
      {"last", 0, 26, {2, 7}, {7, 1}},        // ends exactly at the storage's end
      {"transposed", 0, 1, {3, 2}, {1, 3}},   // non-contiguous: copied
      {"broadcast", 0, 10, {4, 3}, {0, 1}},   // stride 0: copied
      {"column", 0, 5, {4, 1}, {1, 99}},      // size-1 axis: any stride is contiguous
  };
  const std::string path = testing::temp_dir() + "/shared.pth";
  write_pth(path, {storage}, views, {});
  auto file = MappedFile::open(path);
  const TensorStore store = parse_pth(file->bytes(), path, file);
  for (const PickledTensor& view : views) {
    SCOPED_TRACE(view.name);
    const Tensor& t = store.get(view.name);
    ASSERT_EQ(t.shape(), view.shape);
    ASSERT_TRUE(t.is_contiguous());
    const float* got = t.data<float>();
    int64_t flat = 0;
    for (int64_t i = 0; i < view.shape[0]; ++i)
      for (int64_t j = 0; j < view.shape[1]; ++j, ++flat)
        EXPECT_EQ(got[flat], values[view.storage_offset + i * view.strides[0] + j * view.strides[1]]);
  }
  const auto* first = store.get("first").data<float>();
  EXPECT_EQ(store.get("middle").data<float>(), first + 6);
  EXPECT_EQ(store.get("last").data<float>(), first + 26);
  EXPECT_EQ(store.get("column").data<float>(), first + 5);
  const auto* mapped = reinterpret_cast<const float*>(file->data());
  const auto* copy = store.get("transposed").data<float>();
  EXPECT_TRUE(copy < mapped || copy >= mapped + file->size() / sizeof(float));
}

TEST_F(TorchPth, MissingByteorderMeansLittleEndian) {
  SCOPED_TRACE(seed_);
  const Sample sample = odd_tensors(rng_);
  PthWriteOptions options;
  options.byteorder.reset();
  expect_same_store(parse_pth(encode_pth(sample.storages, sample.views, options), "old.pth", nullptr),
                    sample.tensors);
}

// The pickle of `sample` without its PROTO header and STOP, to nest inside another pickle.
std::string state_dict_body(const Sample& sample) {
  std::vector<PickledStorage> storages;
  for (size_t i = 0; i < sample.storages.size(); ++i)
    storages.push_back({sample.storages[i].dtype(), std::to_string(i), sample.storages[i].numel()});
  const std::string pickle = pickle_state_dict(storages, sample.views);
  return pickle.substr(2, pickle.size() - 3);
}

std::string binunicode(const std::string& text) {
  std::string out = "X";
  for (int i = 0; i < 4; ++i) out.push_back(static_cast<char>((text.size() >> (8 * i)) & 0xFF));
  return out + text;
}

// A torch-like archive of `sample`'s records around the given data.pkl.
Bytes archive_with_pickle(const Sample& sample, const std::string& pickle) {
  std::vector<std::pair<std::string, std::string>> entries = {{"archive/data.pkl", pickle}};
  for (size_t i = 0; i < sample.storages.size(); ++i)
    entries.emplace_back("archive/data/" + std::to_string(i),
                         std::string(static_cast<const char*>(sample.storages[i].raw()),
                                     sample.storages[i].nbytes()));
  entries.emplace_back("archive/version", "3\n");
  return make_zip(entries);
}

TEST_F(TorchPth, AcceptsAStateDictNestedUnderOneKey) {
  SCOPED_TRACE(seed_);
  const Sample sample = odd_tensors(rng_);
  const std::string nested =
      "\x80\x02}" + binunicode("state_dict") + state_dict_body(sample) + "s.";
  expect_same_store(parse_pth(archive_with_pickle(sample, nested), "nested.pth", nullptr),
                    sample.tensors);

  // A training checkpoint with more than the weights is not a state dict.
  const std::string training = "\x80\x02}(" + binunicode("model") + state_dict_body(sample) +
                               binunicode("epoch") + "K\x03u.";
  expect_error([&] { parse_pth(archive_with_pickle(sample, training), "train.pth", nullptr); },
               {"train.pth", "'model', 'epoch'", "only a plain state dict"});
}

TEST(TorchPthErrors, TruncatedAtAnyPoint) {
  std::mt19937_64 rng(testing::test_seed());
  const Sample sample = odd_tensors(rng);
  const Bytes bytes = encode_pth(sample.storages, sample.views, {});
  for (size_t cut = 0; cut < bytes.size(); cut += (cut < 64 || bytes.size() - cut < 256) ? 1 : 7) {
    const Bytes truncated(bytes.begin(), bytes.begin() + static_cast<std::ptrdiff_t>(cut));
    expect_error([&] { parse_pth(truncated, "cut.pth", nullptr); }, {"cut.pth", "truncated"});
  }
  expect_read_error(Bytes(bytes.begin(), bytes.begin() + 1000), "truncated");
}

TEST(TorchPthErrors, NotAZip) {
  expect_read_error(to_bytes("this is certainly not a zip archive, but a long enough text"),
                    "not a ZIP archive");
  expect_read_error({}, "not a ZIP archive");
  expect_error([] { read_pth(testing::temp_dir() + "/missing.pth"); }, {"missing.pth", "cannot open"});
}

class TorchPthCorruption : public ::testing::Test {
 protected:
  void SetUp() override {
    std::mt19937_64 rng(testing::test_seed());
    sample_ = odd_tensors(rng);
    bytes_ = encode_pth(sample_.storages, sample_.views, {});
  }
  Sample sample_;
  Bytes bytes_;
};

TEST_F(TorchPthCorruption, BadCentralDirectoryOffsetOrSize) {
  const EndRecords end = end_records(bytes_);
  const uint64_t offset = read_le(bytes_, end.zip64 + 48, 8);
  for (const uint64_t bad : {offset + 1, offset - 1, uint64_t{1} << 40}) {
    Bytes corrupt = bytes_;
    write_le(corrupt, end.zip64 + 48, 8, bad);
    write_le(corrupt, end.classic + 16, 4, bad < 0xFFFFFFFF ? bad : 0xFFFFFFFF);
    expect_read_error(corrupt, "central directory");
  }
  // The two end records must agree.
  Bytes disagree = bytes_;
  write_le(disagree, end.classic + 16, 4, offset + 46);
  expect_read_error(disagree, "disagrees with the ZIP64 record");

  for (const uint64_t bad : {uint64_t{1} << 33, read_le(bytes_, end.zip64 + 40, 8) + 1}) {
    Bytes corrupt = bytes_;
    write_le(corrupt, end.zip64 + 40, 8, bad);
    write_le(corrupt, end.classic + 12, 4, bad < 0xFFFFFFFF ? bad : 0xFFFFFFFF);
    expect_read_error(corrupt, "central directory");
  }
  Bytes short_directory = bytes_;
  const uint64_t size = read_le(bytes_, end.zip64 + 40, 8);
  write_le(short_directory, end.zip64 + 40, 8, size - 10);
  write_le(short_directory, end.classic + 12, 4, size - 10);
  expect_read_error(short_directory, "runs past the end of the directory");

  Bytes too_many = bytes_;
  write_le(too_many, end.zip64 + 24, 8, 1u << 20);
  write_le(too_many, end.zip64 + 32, 8, 1u << 20);
  write_le(too_many, end.classic + 8, 2, 0xFFFF);
  write_le(too_many, end.classic + 10, 2, 0xFFFF);
  expect_read_error(too_many, "entries cannot fit");
}

TEST_F(TorchPthCorruption, EntryPointingPastTheEnd) {
  const size_t header = central_header_of(bytes_, "archive/data/2");
  Bytes past_size = bytes_;
  write_le(past_size, header + 20, 4, 0x7FFFFFF0);
  write_le(past_size, header + 24, 4, 0x7FFFFFF0);
  expect_read_error(past_size, "runs past the end of the data area");

  Bytes past_offset = bytes_;
  write_le(past_offset, header + 42, 4, 0x7FFFFFF0);
  expect_read_error(past_offset, "local header at offset");

  Bytes wrong_offset = bytes_;
  write_le(wrong_offset, header + 42, 4, read_le(bytes_, header + 42, 4) + 3);
  expect_read_error(wrong_offset, "no local header");

  Bytes long_name = bytes_;
  write_le(long_name, header + 28, 2, 0xFFF0);
  expect_read_error(long_name, "runs past the end of the directory");
}

TEST_F(TorchPthCorruption, CompressedEntry) {
  Bytes corrupt = bytes_;
  write_le(corrupt, central_header_of(bytes_, "archive/data/0") + 10, 2, 8);  // deflate
  expect_read_error(corrupt, "'archive/data/0' is compressed");
}

TEST_F(TorchPthCorruption, BigEndianByteorder) {
  PthWriteOptions options;
  options.byteorder = "big";
  expect_read_error(encode_pth(sample_.storages, sample_.views, options), "big-endian");
  options.byteorder = "middle";
  expect_read_error(encode_pth(sample_.storages, sample_.views, options), "unknown byteorder");
}

TEST_F(TorchPthCorruption, MissingRecords) {
  expect_read_error(make_zip({{"archive/byteorder", "little"}, {"archive/version", "3\n"}}),
                    "no archive/data.pkl");
  expect_read_error(make_zip({{"data.pkl", "\x80\x02}."}}), "not inside a top-level folder");
  expect_read_error(make_zip({}), "ZIP is empty");

  std::vector<PickledStorage> storages = {{DType::F32, "7", 4}};
  const std::vector<PickledTensor> views = {{"w", 0, 0, {4}, {1}}};
  const std::string pickle = pickle_state_dict(storages, views);
  expect_read_error(make_zip({{"archive/data.pkl", pickle}, {"archive/data/0", std::string(16, 'a')}}),
                    "no record archive/data/7");
}

TEST_F(TorchPthCorruption, StorageTooSmallForTheTensor) {
  const std::vector<PickledStorage> storages = {{DType::F32, "0", 10}};
  const std::string record(36, 'a');  // 9 floats where the storage claims 10
  expect_read_error(make_zip({{"archive/data.pkl", pickle_state_dict(storages, {{"w", 0, 0, {10}, {1}}})},
                              {"archive/data/0", record}}),
                    "holds 36 bytes, but its storage of 10 F32 elements needs 40");
  const std::string full(40, 'a');
  for (const PickledTensor& view : std::vector<PickledTensor>{
           {"w", 0, 5, {6}, {1}}, {"w", 0, 0, {3, 4}, {4, 1}}, {"w", 0, 0, {2, 2}, {9, 1}},
           {"w", 0, 11, {0}, {1}}, {"w", 0, 0, {1 << 20, 1 << 20, 1 << 20, 1 << 20}, {1, 1, 1, 1}}}) {
    SCOPED_TRACE(shape_str(view.shape));
    expect_read_error(make_zip({{"archive/data.pkl", pickle_state_dict(storages, {view})},
                                {"archive/data/0", full}}),
                      "tensor 'w'");
  }
  // A broadcast may not expand the storage (a tiny file must not allocate gigabytes).
  expect_read_error(make_zip({{"archive/data.pkl", pickle_state_dict(storages, {{"w", 0, 0, {1 << 20, 10}, {0, 1}}})},
                              {"archive/data/0", full}}),
                    "overlapping strides are not supported");
}

TEST_F(TorchPthCorruption, PickleProblems) {
  // Extra entries in a state dict must be tensors too.
  const std::string body = "\x80\x02" + state_dict_body(sample_);
  expect_read_error(archive_with_pickle(sample_, body + binunicode("a") + "Ns."),
                    "state dict entry 'a' is a None, not a tensor");
  expect_read_error(archive_with_pickle(sample_, "\x80\x02}" + binunicode("a") + "Ns."),
                    "dict without tensors (keys 'a')");

  expect_read_error(archive_with_pickle(sample_, "\x80\x02I12\n."),
                    "unsupported pickle opcode 0x49 ('I') at offset 2");
  expect_read_error(archive_with_pickle(sample_, "\x80\x09}."), "unsupported pickle protocol 9");
  expect_read_error(archive_with_pickle(sample_, "\x80\x02N."), "holds a None, not a state dict");
  // A call of anything but the tensor builders is never executed, only named.
  const std::string call = body + binunicode("a") + "cos\nsystem\n" + binunicode("true") +
                           "\x85Rs.";
  expect_read_error(archive_with_pickle(sample_, call), "'a' is a opaque object (os.system)");
  expect_read_error(archive_with_pickle(sample_, "\x80\x02h\x05."), "memo entry 5");
  expect_read_error(archive_with_pickle(sample_, "\x80\x02(s."), "SETITEM on an empty stack");
  expect_read_error(archive_with_pickle(sample_, "\x80\x02\x8a\x09" + std::string(9, '\x01') + "."),
                    "does not fit in 64 bits");

  std::string unknown = state_dict_body(sample_);
  const std::string float_storage = "torch\nFloatStorage\n";
  unknown.replace(unknown.find(float_storage), float_storage.size(), "torch\nMagicStorage\n");
  expect_read_error(archive_with_pickle(sample_, "\x80\x02" + unknown + "."),
                    "unknown storage type torch.MagicStorage");
}

TEST_F(TorchPthCorruption, TruncatedPickle) {
  const std::string pickle = "\x80\x02" + state_dict_body(sample_) + ".";
  ASSERT_NO_THROW(parse_pth(archive_with_pickle(sample_, pickle), "whole.pth", nullptr));
  for (size_t cut = 0; cut < pickle.size(); ++cut)
    expect_error([&] { parse_pth(archive_with_pickle(sample_, pickle.substr(0, cut)), "cut.pth", nullptr); },
                 {"cut.pth", "archive/data.pkl", "truncated pickle"});
}

TEST(Pickle, CyclesAndPlaceholdersAreHarmless) {
  // A list appended to itself through the memo, then an unknown global called with it.
  const std::string pickle = "\x80\x02]q\x00h\x00" "a" "cbuiltins\neval\n" "h\x00\x85R."s;
  const auto bytes = to_bytes(pickle);
  const PickleDocument document = parse_pickle(bytes, "cycle.pkl");
  EXPECT_EQ(document.root().kind, PickleValue::Kind::Opaque);
  EXPECT_EQ(document.root().text, "builtins.eval");
}

TEST(Pickle, IntegersRoundTripThroughTheWriter) {
  for (const int64_t value : {int64_t{0}, int64_t{255}, int64_t{256}, int64_t{65536},
                              int64_t{-1}, int64_t{1} << 31, int64_t{1} << 40, INT64_MAX, INT64_MIN}) {
    const std::vector<PickledStorage> storages = {{DType::BF16, "0", value}};
    const std::string pickle = pickle_state_dict(storages, {{"w", 0, value, {}, {}}});
    SCOPED_TRACE(value);
    if (value < 0) {
      expect_error([&] { parse_pickle(to_bytes(pickle), "ints.pkl"); }, {"ints.pkl", "negative"});
      continue;
    }
    const PickleDocument document = parse_pickle(to_bytes(pickle), "ints.pkl");
    const PickleValue& tensor = *document.root().entries.at(0).second;
    EXPECT_EQ(tensor.storage_offset, value);
    EXPECT_EQ(tensor.storage->storage_numel, value);
  }
}

}  // namespace
}  // namespace wanrt
