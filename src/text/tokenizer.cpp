#include "text/tokenizer.h"

#include <filesystem>

#include "core/error.h"
#include "text/text_clean.h"

#if WANRT_HAVE_SENTENCEPIECE
#include <sentencepiece_processor.h>
#endif

namespace wanrt {

#if WANRT_HAVE_SENTENCEPIECE

struct Tokenizer::Impl {
  sentencepiece::SentencePieceProcessor processor;
  std::string path;
};

Tokenizer::Tokenizer(const std::string& spiece_model_path) : impl_(std::make_unique<Impl>()) {
  impl_->path = spiece_model_path;
  std::error_code error;
  WANRT_CHECK(std::filesystem::is_regular_file(spiece_model_path, error),
              "tokenizer model ", spiece_model_path,
              " does not exist or is not a file (expected the SentencePiece spiece.model from "
              "the checkpoint's google/umt5-xxl/ folder)");
  const auto status = impl_->processor.Load(spiece_model_path);
  WANRT_CHECK(status.ok(), "tokenizer model ", spiece_model_path,
              " could not be loaded as a SentencePiece model: ", status.ToString());
  WANRT_CHECK(impl_->processor.pad_id() == kPadId && impl_->processor.eos_id() == kEosId,
              "tokenizer model ", spiece_model_path, " has pad id ", impl_->processor.pad_id(),
              " and eos id ", impl_->processor.eos_id(), "; umT5 needs pad 0 and eos 1");
}

std::vector<int64_t> Tokenizer::pieces(std::string_view text) const {
  std::vector<int> ids;
  const auto status = impl_->processor.Encode({text.data(), text.size()}, &ids);
  WANRT_CHECK(status.ok(), "SentencePiece (", impl_->path, ") failed to encode a text: ",
              status.ToString());
  return {ids.begin(), ids.end()};
}

int64_t Tokenizer::vocab_size() const { return impl_->processor.GetPieceSize(); }

#else  // no SentencePiece library

struct Tokenizer::Impl {};

Tokenizer::Tokenizer(const std::string& spiece_model_path) {
  fail("cannot load the tokenizer ", spiece_model_path,
       ": wanrt was built without the SentencePiece library (install libsentencepiece-dev "
       "and reconfigure)");
}

std::vector<int64_t> Tokenizer::pieces(std::string_view) const {
  fail("wanrt was built without the SentencePiece library");
}

int64_t Tokenizer::vocab_size() const { fail("wanrt was built without the SentencePiece library"); }

#endif

Tokenizer::~Tokenizer() = default;
Tokenizer::Tokenizer(Tokenizer&&) noexcept = default;
Tokenizer& Tokenizer::operator=(Tokenizer&&) noexcept = default;

TokenizedText Tokenizer::encode(std::string_view text, int64_t max_len,
                                TextCleaning cleaning) const {
  WANRT_CHECK(max_len >= 1, "tokenizer max_len must be at least 1 (room for EOS), got ", max_len);
  const std::string cleaned =
      cleaning == TextCleaning::Reference ? clean_prompt_text(text) : std::string(text);
  std::vector<int64_t> ids = pieces(cleaned);
  // Truncation keeps room for EOS, which is always the last real token.
  if (static_cast<int64_t>(ids.size()) > max_len - 1) ids.resize(static_cast<size_t>(max_len - 1));
  ids.push_back(kEosId);
  TokenizedText result;
  result.length = static_cast<int64_t>(ids.size());
  ids.resize(static_cast<size_t>(max_len), kPadId);
  result.ids = std::move(ids);
  return result;
}

}  // namespace wanrt
