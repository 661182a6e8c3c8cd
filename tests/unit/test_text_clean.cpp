// The reference prompt cleaning (ftfy's deterministic fixes, html.unescape twice, whitespace
// collapse) on crafted strings whose expected output follows from the rules in text_clean.h.
#include <random>
#include <string>

#include "test_support.h"
#include "text/text_clean.h"

namespace wanrt {
namespace {

TEST(TextClean, HtmlEntitiesNamedAndNumeric) {
  EXPECT_EQ(clean_prompt_text("Tom &amp; Jerry &lt;3 caf&eacute;"), "Tom & Jerry <3 café");
  EXPECT_EQ(clean_prompt_text("&#65;&#x42;&#X43; &#8364;"), "ABC €");
  // Double-escaped text is unescaped fully (ftfy's loop and the two html.unescape passes).
  EXPECT_EQ(clean_prompt_text("fish &amp;amp; chips"), "fish & chips");
  EXPECT_EQ(clean_prompt_text("&amp;amp;amp;lt;"), "<");
  // Unknown names stay; legacy names without ';' expand (Python's html.unescape rules).
  EXPECT_EQ(clean_prompt_text("&nosuchthing; &copy 2024 &ampx"), "&nosuchthing; © 2024 &x");
}

TEST(TextClean, HtmlNumericReferenceEdgeCases) {
  EXPECT_EQ(html_unescape("&#0;"), "\xEF\xBF\xBD");               // U+FFFD
  EXPECT_EQ(html_unescape("&#128;&#x93;"), "\xE2\x82\xAC\xE2\x80\x9C");  // Windows-1252: € “
  EXPECT_EQ(html_unescape("a&#1;b"), "ab");                        // forbidden code point: dropped
  EXPECT_EQ(html_unescape("&#xD800;&#99999999999999999999;"), "\xEF\xBF\xBD\xEF\xBF\xBD");
  EXPECT_EQ(html_unescape("&#;&#x;&"), "&#;&#x;&");
  EXPECT_EQ(html_unescape("&#65"), "A");  // html.unescape accepts a missing ';'
  // ftfy only unescapes references closed by ';' ...
  EXPECT_EQ(ftfy_fix_text("&#65 &lt"), "&#65 &lt");
  EXPECT_EQ(ftfy_fix_text("&#65;&lt;"), "A<");
}

TEST(TextClean, FtfyLeavesEntitiesOfRealHtmlAlone) {
  // A '<' marks the line, and every later one, as HTML: ftfy keeps the entities there.
  EXPECT_EQ(ftfy_fix_text("&amp;\n<b>&amp;</b>\n&amp;"), "&\n<b>&amp;</b>\n&amp;");
  // The reference's own html.unescape passes still expand them afterwards.
  EXPECT_EQ(clean_prompt_text("<b>&amp;amp;</b>"), "<b>&</b>");
}

TEST(TextClean, FullWidthFormsFoldToAscii) {
  // The default negative prompt's full-width comma.
  EXPECT_EQ(clean_prompt_text("色调艳丽，过曝，静态"), "色调艳丽,过曝,静态");
  EXPECT_EQ(clean_prompt_text("ＡＢＣ（１２３）！～"), "ABC(123)!~");
  // Ideographic space is whitespace and folds to ' '.
  EXPECT_EQ(clean_prompt_text("a\xE3\x80\x80\xE3\x80\x80" "b"), "a b");
  // Half-width katakana become full-width; half-width ideographic full stop too.
  EXPECT_EQ(ftfy_fix_text("\xEF\xBD\xB1\xEF\xBD\xA1"), "ア。");
}

TEST(TextClean, QuotesLigaturesControls) {
  EXPECT_EQ(clean_prompt_text("\xE2\x80\x9CHi\xE2\x80\x9D, it\xE2\x80\x99s \xE2\x80\x98ok\xE2\x80\x99"),
            "\"Hi\", it's 'ok'");
  EXPECT_EQ(clean_prompt_text("\xEF\xAC\x81nal o\xEF\xAC\x83" "ce \xEF\xAC\x80"), "final office ff");
  // C1 controls are Windows-1252 bytes: U+0093/U+0094 are curly quotes, then uncurled.
  EXPECT_EQ(clean_prompt_text("\xC2\x93quoted\xC2\x94"), "\"quoted\"");
  // Control characters and a byte-order mark are removed; terminal colour codes too.
  EXPECT_EQ(clean_prompt_text("a\x01" "b\x7f" "c\xEF\xBB\xBF" "d \x1b[31mred\x1b[0m"), "abcd red");
  // Invalid UTF-8 becomes U+FFFD.
  EXPECT_EQ(clean_prompt_text("x\xFFy"), "x\xEF\xBF\xBDy");
}

TEST(TextClean, WhitespaceRunsCollapse) {
  EXPECT_EQ(clean_prompt_text("  A   close-up   shot\n\thighlights \r\n the\ffeline  "),
            "A close-up shot highlights the feline");
  // ftfy removes a vertical tab as a control character before whitespace is collapsed.
  EXPECT_EQ(clean_prompt_text("the\vfeline"), "thefeline");
  // Unicode whitespace: no-break space, em space, line separator, narrow no-break space.
  EXPECT_EQ(collapse_whitespace("a\xC2\xA0\xE2\x80\x83" "b\xE2\x80\xA8\xE2\x80\xAF" "c"), "a b c");
  EXPECT_EQ(clean_prompt_text(" \t\n "), "");
  EXPECT_EQ(clean_prompt_text(""), "");
}

TEST(TextClean, RandomAsciiTextWithoutSpecialsOnlyCollapsesWhitespace) {
  // Plain ASCII words without '&', controls or quotes: cleaning must equal whitespace collapse,
  // and the result has no leading, trailing or doubled spaces.
  std::mt19937_64 rng(testing::test_seed());
  const std::string alphabet = "abcdefghijklmnopqrstuvwxyzABCXYZ0123456789.,!?-";
  const std::string spaces[] = {" ", "  ", "\t", "\n", " \r\n "};
  for (int trial = 0; trial < 50; ++trial) {
    std::string text, expected;
    const int words = static_cast<int>(rng() % 20);
    for (int w = 0; w < words; ++w) {
      std::string word;
      const int letters = 1 + static_cast<int>(rng() % 8);
      for (int k = 0; k < letters; ++k) word += alphabet[rng() % alphabet.size()];
      text += spaces[rng() % 5] + word;
      expected += (w ? " " : "") + word;
    }
    text += spaces[rng() % 5];
    EXPECT_EQ(clean_prompt_text(text), expected) << "input: " << text;
  }
}

}  // namespace
}  // namespace wanrt
