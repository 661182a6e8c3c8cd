#include "io/pickle.h"

#include <bit>
#include <cstring>
#include <unordered_map>

#include "core/error.h"

namespace wanrt {
namespace {

// Bounds that keep a hostile pickle from exhausting memory; a real state dict of thousands of
// tensors stays far below each of them.
constexpr size_t kMaxStackDepth = size_t{1} << 20;
constexpr size_t kMaxMarks = size_t{1} << 16;
constexpr size_t kMaxMemoEntries = size_t{1} << 20;
constexpr size_t kMaxValues = size_t{1} << 20;
constexpr int kHighestProtocol = 5;

struct StorageClass {
  std::string_view name;
  DType dtype;
};
constexpr StorageClass kStorageClasses[] = {
    {"BFloat16Storage", DType::BF16}, {"HalfStorage", DType::F16},
    {"FloatStorage", DType::F32},     {"DoubleStorage", DType::F64},
    {"LongStorage", DType::I64},      {"IntStorage", DType::I32},
    {"ShortStorage", DType::I16},     {"CharStorage", DType::I8},
    {"ByteStorage", DType::U8},       {"BoolStorage", DType::BOOL},
    {"Float8_e4m3fnStorage", DType::F8_E4M3}, {"Float8_e5m2Storage", DType::F8_E5M2},
};

std::string hex_byte(uint8_t value) {
  static constexpr char kDigits[] = "0123456789abcdef";
  return {'0', 'x', kDigits[value >> 4], kDigits[value & 15]};
}

}  // namespace

std::string_view pickle_kind_name(PickleValue::Kind kind) {
  using Kind = PickleValue::Kind;
  switch (kind) {
    case Kind::None: return "None";
    case Kind::Bool: return "bool";
    case Kind::Int: return "int";
    case Kind::Float: return "float";
    case Kind::String: return "str";
    case Kind::Tuple: return "tuple";
    case Kind::List: return "list";
    case Kind::Dict: return "dict";
    case Kind::Global: return "global";
    case Kind::Storage: return "storage";
    case Kind::Tensor: return "tensor";
    case Kind::Opaque: return "opaque object";
  }
  return "?";
}

std::optional<DType> torch_storage_dtype(std::string_view storage_class) {
  for (const auto& entry : kStorageClasses)
    if (entry.name == storage_class) return entry.dtype;
  return std::nullopt;
}

std::string_view torch_storage_class(DType dtype) {
  for (const auto& entry : kStorageClasses)
    if (entry.dtype == dtype) return entry.name;
  WANRT_ASSERT(false);
}

class PickleMachine {
  using Kind = PickleValue::Kind;

 public:
  PickleMachine(std::span<const std::byte> bytes, const std::string& label)
      : in_(bytes), label_(label) {}

  PickleDocument run() {
    while (true) {
      if (position_ >= in_.size())
        fail(label_, ": truncated pickle: ", in_.size(), " bytes end before the STOP opcode");
      opcode_at_ = position_;
      const uint8_t opcode = read_u8();
      switch (opcode) {
        case 0x80: {  // PROTO
          const uint8_t version = read_u8();
          if (version > kHighestProtocol) error("unsupported pickle protocol ", int{version});
          break;
        }
        case 0x95: read_uint(8); break;  // FRAME: a length hint only
        case '.': {  // STOP
          document_.root_ = pop("STOP");
          return std::move(document_);
        }
        case '(':  // MARK
          if (marks_.size() >= kMaxMarks) error("too many nested MARKs");
          marks_.push_back(stack_.size());
          break;
        case 'N': push(make(Kind::None)); break;
        case 0x88:
        case 0x89: {  // NEWTRUE, NEWFALSE
          PickleValue* value = make(Kind::Bool);
          value->boolean = opcode == 0x88;
          push(value);
          break;
        }
        case 'K': push_int(static_cast<int64_t>(read_uint(1))); break;  // BININT1
        case 'M': push_int(static_cast<int64_t>(read_uint(2))); break;  // BININT2
        case 'J':  // BININT: signed 32-bit
          push_int(static_cast<int32_t>(static_cast<uint32_t>(read_uint(4))));
          break;
        case 0x8a: push_int(read_long1()); break;
        case 'G': {  // BINFLOAT: big-endian IEEE double
          uint64_t bits = 0;
          for (const std::byte b : read_bytes(8, "BINFLOAT"))
            bits = (bits << 8) | std::to_integer<uint64_t>(b);
          PickleValue* value = make(Kind::Float);
          value->floating = std::bit_cast<double>(bits);
          push(value);
          break;
        }
        case 0x8c: push_string(read_bytes(read_uint(1), "SHORT_BINUNICODE")); break;
        case 'X': push_string(read_bytes(read_uint(4), "BINUNICODE")); break;
        case 0x8d: push_string(read_bytes(read_uint(8), "BINUNICODE8")); break;
        case ')': push(make(Kind::Tuple)); break;
        case 't': push_tuple(pop_to_mark("TUPLE")); break;
        case 0x85:
        case 0x86:
        case 0x87: {  // TUPLE1..3
          const size_t count = size_t{opcode} - 0x84;
          std::vector<PickleValue*> items(count);
          for (size_t i = count; i-- > 0;) items[i] = pop("TUPLE1/2/3");
          push_tuple(std::move(items));
          break;
        }
        case ']': push(make(Kind::List)); break;
        case '}': push(make(Kind::Dict)); break;
        case 'a': {  // APPEND
          PickleValue* item = pop("APPEND");
          expect(top("APPEND"), Kind::List, "APPEND")->items.push_back(item);
          break;
        }
        case 'e': {  // APPENDS
          auto items = pop_to_mark("APPENDS");
          PickleValue* list = expect(top("APPENDS"), Kind::List, "APPENDS");
          list->items.insert(list->items.end(), items.begin(), items.end());
          break;
        }
        case 's': {  // SETITEM
          PickleValue* value = pop("SETITEM");
          PickleValue* key = pop("SETITEM");
          expect(top("SETITEM"), Kind::Dict, "SETITEM")->entries.emplace_back(key, value);
          break;
        }
        case 'u': {  // SETITEMS
          auto items = pop_to_mark("SETITEMS");
          if (items.size() % 2 != 0) error("SETITEMS with an odd number of items");
          PickleValue* dict = expect(top("SETITEMS"), Kind::Dict, "SETITEMS");
          for (size_t i = 0; i < items.size(); i += 2)
            dict->entries.emplace_back(items[i], items[i + 1]);
          break;
        }
        case 'q': memo_put(read_uint(1)); break;   // BINPUT
        case 'r': memo_put(read_uint(4)); break;   // LONG_BINPUT
        case 0x94: memo_put(memo_.size()); break;  // MEMOIZE
        case 'h': memo_get(read_uint(1)); break;   // BINGET
        case 'j': memo_get(read_uint(4)); break;   // LONG_BINGET
        case 'c': {  // GLOBAL: "module\nname\n"
          const std::string module(read_line());
          const std::string name(read_line());
          push_global(module, name);
          break;
        }
        case 0x93: {  // STACK_GLOBAL
          const PickleValue* name = expect(pop("STACK_GLOBAL"), Kind::String, "STACK_GLOBAL");
          const PickleValue* module = expect(pop("STACK_GLOBAL"), Kind::String, "STACK_GLOBAL");
          push_global(module->text, name->text);
          break;
        }
        case 'Q': push(persistent_storage(pop("BINPERSID"))); break;
        case 'R': {  // REDUCE
          PickleValue* arguments = expect(pop("REDUCE"), Kind::Tuple, "REDUCE arguments");
          PickleValue* callable = pop("REDUCE");
          push(reduce(*callable, *arguments));
          break;
        }
        case 'b':  // BUILD: the state (e.g. a state dict's _metadata) is not needed
          pop("BUILD");
          top("BUILD");
          break;
        default:
          // Only the opcodes torch.save uses for a state dict are understood.
          error("unsupported pickle opcode ", hex_byte(opcode),
                opcode >= 0x20 && opcode < 0x7f ? str_cat(" ('", static_cast<char>(opcode), "')")
                                                : std::string());
      }
    }
  }

 private:
  template <typename... Parts>
  [[noreturn]] void error(Parts&&... parts) const {
    fail(label_, ": ", std::forward<Parts>(parts)..., " at offset ", opcode_at_);
  }

  uint8_t read_u8() { return static_cast<uint8_t>(read_uint(1)); }
  std::span<const std::byte> read_bytes(uint64_t count, const char* what) {
    if (count > in_.size() - position_)
      fail(label_, ": truncated pickle: ", what, " at offset ", opcode_at_, " needs ", count,
           " bytes, only ", in_.size() - position_, " remain");
    const auto bytes = in_.subspan(position_, static_cast<size_t>(count));
    position_ += static_cast<size_t>(count);
    return bytes;
  }
  uint64_t read_uint(int width) {
    uint64_t value = 0;
    const auto bytes = read_bytes(static_cast<uint64_t>(width), "an opcode argument");
    for (size_t i = bytes.size(); i-- > 0;) value = (value << 8) | std::to_integer<uint64_t>(bytes[i]);
    return value;
  }
  std::string_view read_line() {
    for (size_t end = position_; end < in_.size(); ++end) {
      if (in_[end] == std::byte{'\n'}) {
        std::string_view line(reinterpret_cast<const char*>(in_.data() + position_), end - position_);
        position_ = end + 1;
        return line;
      }
    }
    fail(label_, ": truncated pickle: GLOBAL at offset ", opcode_at_, " has no end of line");
  }
  // LONG1: a little-endian two's complement integer of n bytes; 0 bytes means 0.
  int64_t read_long1() {
    const uint8_t count = read_u8();
    if (count > 8) error("LONG1 integer of ", int{count}, " bytes does not fit in 64 bits");
    const auto bytes = read_bytes(count, "LONG1");
    uint64_t value = 0;
    for (size_t i = bytes.size(); i-- > 0;) value = (value << 8) | std::to_integer<uint64_t>(bytes[i]);
    if (count > 0 && count < 8 && (std::to_integer<uint8_t>(bytes[count - 1]) & 0x80))
      value |= ~uint64_t{0} << (8 * count);  // sign-extend
    return static_cast<int64_t>(value);
  }

  PickleValue* make(Kind kind) {
    if (document_.values_.size() >= kMaxValues) error("pickle builds too many objects");
    document_.values_.push_back(std::make_unique<PickleValue>());
    PickleValue* value = document_.values_.back().get();
    value->kind = kind;
    return value;
  }
  void push(PickleValue* value) {
    if (stack_.size() >= kMaxStackDepth) error("pickle stack too deep");
    stack_.push_back(value);
  }
  void push_int(int64_t integer) {
    PickleValue* value = make(Kind::Int);
    value->integer = integer;
    push(value);
  }
  void push_string(std::span<const std::byte> bytes) {
    PickleValue* value = make(Kind::String);
    value->text.assign(reinterpret_cast<const char*>(bytes.data()), bytes.size());
    push(value);
  }
  void push_tuple(std::vector<PickleValue*> items) {
    PickleValue* value = make(Kind::Tuple);
    value->items = std::move(items);
    push(value);
  }
  void push_global(const std::string& module, const std::string& name) {
    PickleValue* value = make(Kind::Global);
    value->text = module + "." + name;
    push(value);
  }
  // The stack above the innermost MARK is all an opcode may consume.
  size_t floor() const { return marks_.empty() ? 0 : marks_.back(); }
  PickleValue* top(const char* opcode) const {
    if (stack_.size() <= floor()) error(opcode, " on an empty stack");
    return stack_.back();
  }
  PickleValue* pop(const char* opcode) {
    PickleValue* value = top(opcode);
    stack_.pop_back();
    return value;
  }
  std::vector<PickleValue*> pop_to_mark(const char* opcode) {
    if (marks_.empty()) error(opcode, " without a MARK");
    const size_t mark = marks_.back();
    marks_.pop_back();
    std::vector<PickleValue*> items(stack_.begin() + static_cast<std::ptrdiff_t>(mark),
                                    stack_.end());
    stack_.resize(mark);
    return items;
  }
  PickleValue* expect(PickleValue* value, Kind kind, const char* what) const {
    if (value->kind != kind)
      error(what, " expects a ", pickle_kind_name(kind), ", got a ", pickle_kind_name(value->kind));
    return value;
  }
  void memo_put(uint64_t index) {
    PickleValue* value = top("memo store");
    if (memo_.size() >= kMaxMemoEntries && !memo_.count(index)) error("pickle memo too large");
    memo_[index] = value;
  }
  void memo_get(uint64_t index) {
    const auto it = memo_.find(index);
    if (it == memo_.end()) error("memo entry ", index, " fetched before it was stored");
    push(it->second);
  }

  // ('storage', torch.<T>Storage, key, location, numel) -> a storage handle.
  PickleValue* persistent_storage(const PickleValue* id) {
    if (id->kind != Kind::Tuple || id->items.size() != 5 || id->items[0]->kind != Kind::String ||
        id->items[0]->text != "storage")
      error("persistent id is not a ('storage', type, key, location, numel) tuple");
    const PickleValue* type = id->items[1];
    const PickleValue* key = id->items[2];
    const PickleValue* numel = id->items[4];
    if (type->kind != Kind::Global || key->kind != Kind::String || numel->kind != Kind::Int)
      error("persistent id has a malformed storage type, key or element count");
    constexpr std::string_view kTorchPrefix = "torch.";
    const std::string_view type_name = type->text;
    const auto dtype = type_name.starts_with(kTorchPrefix)
                           ? torch_storage_dtype(type_name.substr(kTorchPrefix.size()))
                           : std::nullopt;
    if (!dtype) error("unknown storage type ", type_name, " for storage '", key->text, "'");
    if (numel->integer < 0) error("storage '", key->text, "' has negative size ", numel->integer);
    PickleValue* storage = make(Kind::Storage);
    storage->dtype = *dtype;
    storage->text = key->text;
    storage->storage_numel = numel->integer;
    return storage;
  }

  Shape int_tuple(const PickleValue* value, const char* what) const {
    if (value->kind != Kind::Tuple) error("tensor ", what, " is a ", pickle_kind_name(value->kind), ", not a tuple");
    Shape numbers;
    for (const PickleValue* item : value->items) {
      if (item->kind != Kind::Int || item->integer < 0)
        error("tensor ", what, " holds something other than a non-negative integer");
      numbers.push_back(item->integer);
    }
    return numbers;
  }

  // Recognised callables build values; every other call becomes an opaque placeholder.
  PickleValue* reduce(const PickleValue& callable, const PickleValue& arguments) {
    const std::string_view name = callable.kind == Kind::Global ? std::string_view(callable.text)
                                                                : std::string_view();
    const auto& args = arguments.items;
    if (name == "torch._utils._rebuild_tensor_v2" || name == "torch._utils._rebuild_tensor") {
      if (args.size() < 4) error(name, " with ", args.size(), " arguments, expected at least 4");
      if (args[0]->kind != Kind::Storage) error(name, " of a ", pickle_kind_name(args[0]->kind), ", not a storage");
      if (args[1]->kind != Kind::Int || args[1]->integer < 0) error(name, " with a bad storage offset");
      PickleValue* tensor = make(Kind::Tensor);
      tensor->storage = args[0];
      tensor->storage_offset = args[1]->integer;
      tensor->shape = int_tuple(args[2], "size");
      tensor->strides = int_tuple(args[3], "stride");
      if (tensor->shape.size() != tensor->strides.size())
        error(name, " with ", tensor->shape.size(), " sizes but ", tensor->strides.size(), " strides");
      return tensor;
    }
    // nn.Parameter(tensor, requires_grad, hooks): the tensor is all a state dict needs.
    if (name == "torch._utils._rebuild_parameter" && !args.empty() && args[0]->kind == Kind::Tensor)
      return args[0];
    if (name == "collections.OrderedDict" && args.empty()) return make(Kind::Dict);
    PickleValue* placeholder = make(Kind::Opaque);
    placeholder->text = name.empty() ? str_cat("a call of a ", pickle_kind_name(callable.kind))
                                     : std::string(name);
    return placeholder;
  }

  std::span<const std::byte> in_;
  const std::string& label_;
  size_t position_ = 0;
  size_t opcode_at_ = 0;
  PickleDocument document_;
  std::vector<PickleValue*> stack_;
  std::vector<size_t> marks_;
  std::unordered_map<uint64_t, PickleValue*> memo_;
};

PickleDocument parse_pickle(std::span<const std::byte> bytes, const std::string& label) {
  return PickleMachine(bytes, label).run();
}

// ---- writer ----

namespace {

class PickleWriter {
 public:
  void opcode(char op) { out_.push_back(op); }
  void raw(uint64_t value, int width) {
    for (int i = 0; i < width; ++i) out_.push_back(static_cast<char>((value >> (8 * i)) & 0xFF));
  }
  void integer(int64_t value) {
    if (value >= 0 && value <= 0xFF) {
      opcode('K');
      raw(static_cast<uint64_t>(value), 1);
    } else if (value >= 0 && value <= 0xFFFF) {
      opcode('M');
      raw(static_cast<uint64_t>(value), 2);
    } else if (value >= INT32_MIN && value <= INT32_MAX) {
      opcode('J');
      raw(static_cast<uint64_t>(value), 4);
    } else {  // LONG1, shortest two's complement as Python writes it
      int width = 8;
      while (width > 1) {
        const int64_t shifted = value >> (8 * (width - 1) - 1);
        if (shifted != 0 && shifted != -1) break;
        --width;
      }
      opcode(static_cast<char>(0x8a));
      raw(static_cast<uint64_t>(width), 1);
      raw(static_cast<uint64_t>(value), width);
    }
  }
  void string(std::string_view text) {
    opcode('X');
    raw(text.size(), 4);
    out_.append(text);
  }
  // GLOBAL the first time, BINGET from the memo afterwards.
  void global(const std::string& module, const std::string& name) {
    const std::string key = module + "\n" + name + "\n";
    if (const auto it = memo_.find(key); it != memo_.end()) {
      get(it->second);
      return;
    }
    opcode('c');
    out_.append(key);
    const uint32_t index = next_memo_++;
    opcode('r');
    raw(index, 4);
    memo_.emplace(key, index);
  }
  void get(uint32_t index) {
    opcode('j');
    raw(index, 4);
  }
  void int_tuple(const Shape& values) {
    opcode('(');
    for (int64_t v : values) integer(v);
    opcode('t');
  }
  std::string take() { return std::move(out_); }

 private:
  std::string out_;
  std::unordered_map<std::string, uint32_t> memo_;
  uint32_t next_memo_ = 0;
};

}  // namespace

std::string pickle_state_dict(const std::vector<PickledStorage>& storages,
                              const std::vector<PickledTensor>& tensors) {
  // Python's pickler flushes SETITEMS every 1000 pairs.
  constexpr size_t kBatch = 1000;
  PickleWriter out;
  out.opcode(static_cast<char>(0x80));
  out.raw(2, 1);
  out.global("collections", "OrderedDict");
  out.opcode(')');
  out.opcode('R');
  for (size_t i = 0; i < tensors.size(); ++i) {
    if (i % kBatch == 0) out.opcode('(');
    const PickledTensor& tensor = tensors[i];
    WANRT_ASSERT(tensor.storage < storages.size());
    const PickledStorage& storage = storages[tensor.storage];
    out.string(tensor.name);
    out.global("torch._utils", "_rebuild_tensor_v2");
    out.opcode('(');
    out.opcode('(');
    out.string("storage");
    out.global("torch", std::string(torch_storage_class(storage.dtype)));
    out.string(storage.key);
    out.string("cpu");
    out.integer(storage.numel);
    out.opcode('t');
    out.opcode('Q');
    out.integer(tensor.storage_offset);
    out.int_tuple(tensor.shape);
    out.int_tuple(tensor.strides);
    out.opcode(static_cast<char>(0x89));  // requires_grad = False
    out.global("collections", "OrderedDict");
    out.opcode(')');
    out.opcode('R');
    out.opcode('t');
    out.opcode('R');
    if (i % kBatch == kBatch - 1 || i + 1 == tensors.size()) out.opcode('u');
  }
  out.opcode('.');
  return out.take();
}

}  // namespace wanrt
