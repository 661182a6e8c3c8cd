// A tiny pickle machine for PyTorch state dicts (data.pkl of a torch.save archive), and the
// matching protocol-2 writer.
//
// The machine knows only the opcodes torch.save emits for a state dict (spec §4.5); any other
// opcode is an error naming it (hex) and its offset. It never executes anything: REDUCE
// recognises torch._utils._rebuild_tensor_v2 / _rebuild_tensor / _rebuild_parameter and
// collections.OrderedDict, and turns every other call into an opaque placeholder. Persistent
// ids must be torch storages ('storage', torch.<T>Storage, key, location, numel). The stack,
// memo and object count are bounded and every length is checked against the remaining bytes.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "core/dtype.h"
#include "core/tensor.h"

namespace wanrt {

// One object of an unpickled graph. Objects refer to each other by plain pointers (a pickle can
// build cycles through its memo); all of them are owned by their PickleDocument.
struct PickleValue {
  enum class Kind : uint8_t {
    None, Bool, Int, Float, String, Tuple, List, Dict,
    Global,   // a module attribute that was named but not called: text = "module.name"
    Storage,  // a torch storage from a persistent id
    Tensor,   // the result of _rebuild_tensor(_v2)
    Opaque,   // the result of any other call: text = what was called
  };
  Kind kind = Kind::None;
  bool boolean = false;
  int64_t integer = 0;
  double floating = 0;
  std::string text;                   // String, Global, Opaque; Storage: its record key
  std::vector<PickleValue*> items;    // Tuple, List
  std::vector<std::pair<PickleValue*, PickleValue*>> entries;  // Dict, in insertion order
  // Storage: element type and element count of the whole storage.
  DType dtype = DType::U8;
  int64_t storage_numel = 0;
  // Tensor: a strided view of `storage` (strides in elements, as PyTorch's).
  const PickleValue* storage = nullptr;
  int64_t storage_offset = 0;
  Shape shape;
  Shape strides;
};

std::string_view pickle_kind_name(PickleValue::Kind kind);

class PickleDocument {
 public:
  const PickleValue& root() const { return *root_; }

 private:
  friend class PickleMachine;
  std::vector<std::unique_ptr<PickleValue>> values_;
  const PickleValue* root_ = nullptr;
};

// Runs the pickle in `bytes` up to its STOP opcode. `label` (e.g. "model.pth: data.pkl")
// starts every error message.
PickleDocument parse_pickle(std::span<const std::byte> bytes, const std::string& label);

// The element type of a torch storage class ("BFloat16Storage" -> BF16), and back.
std::optional<DType> torch_storage_dtype(std::string_view storage_class);
std::string_view torch_storage_class(DType dtype);

// Input of the writer: storages, and tensors viewing them.
struct PickledStorage {
  DType dtype = DType::F32;
  std::string key;      // the archive record is data/<key>
  int64_t numel = 0;
};
struct PickledTensor {
  std::string name;
  size_t storage = 0;   // index into the storages
  int64_t storage_offset = 0;
  Shape shape;
  Shape strides;        // in elements
};

// The protocol-2 pickle torch.save writes for a state dict: an OrderedDict mapping each name
// to _rebuild_tensor_v2(persistent storage id, offset, size, stride, False, OrderedDict()).
// Nothing is validated here, so tests can describe malformed files too.
std::string pickle_state_dict(const std::vector<PickledStorage>& storages,
                              const std::vector<PickledTensor>& tensors);

}  // namespace wanrt
