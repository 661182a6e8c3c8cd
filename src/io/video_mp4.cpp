// MP4/H.264 through FFmpeg's libraries (libavformat, libavcodec's libx264 wrapper, libswscale),
// reproducing what imageio-ffmpeg asks the ffmpeg program for: rgb24 frames converted to
// yuv420p with swscale's bicubic default, libx264 at crf 10, default preset.
#include "io/video_encoders.h"
#include "io/video_writer.h"

#include <memory>
#include <mutex>
#include <vector>

#ifdef WANRT_HAVE_FFMPEG
extern "C" {
#include <libavcodec/avcodec.h>
#include <libavformat/avformat.h>
#include <libavutil/error.h>
#include <libavutil/frame.h>
#include <libavutil/log.h>
#include <libavutil/opt.h>
#include <libswscale/swscale.h>
}
#endif

namespace wanrt {

#ifdef WANRT_HAVE_FFMPEG
namespace {

// libx264 and libavformat log progress at INFO level on stderr; only real errors should show.
void quiet_ffmpeg_logging() {
  static std::once_flag once;
  std::call_once(once, [] { av_log_set_level(AV_LOG_ERROR); });
}

std::string av_error_text(int code) {
  char text[AV_ERROR_MAX_STRING_SIZE] = {};
  av_strerror(code, text, sizeof(text));
  return text;
}

struct FormatContextDeleter {
  void operator()(AVFormatContext* context) const {
    if (context->pb) avio_closep(&context->pb);
    avformat_free_context(context);
  }
};
struct CodecContextDeleter {
  void operator()(AVCodecContext* context) const { avcodec_free_context(&context); }
};
struct FrameDeleter {
  void operator()(AVFrame* frame) const { av_frame_free(&frame); }
};
struct PacketDeleter {
  void operator()(AVPacket* packet) const { av_packet_free(&packet); }
};
struct SwsDeleter {
  void operator()(SwsContext* context) const { sws_freeContext(context); }
};

// Receives every packet the encoder has ready and hands it to the muxer.
void drain_packets(AVCodecContext* encoder, AVFormatContext* muxer, AVStream* stream,
                   AVPacket* packet, const std::string& shown_path) {
  for (;;) {
    const int status = avcodec_receive_packet(encoder, packet);
    if (status == AVERROR(EAGAIN) || status == AVERROR_EOF) return;
    WANRT_CHECK(status >= 0, "cannot write video ", shown_path, ": H.264 encoding failed (",
                av_error_text(status), ")");
    av_packet_rescale_ts(packet, encoder->time_base, stream->time_base);
    packet->stream_index = stream->index;
    const int written = av_interleaved_write_frame(muxer, packet);  // takes the packet's data
    WANRT_CHECK(written >= 0, "cannot write video ", shown_path, ": ", av_error_text(written));
  }
}

}  // namespace
#endif

std::string mp4_unavailable_reason(int64_t width, int64_t height) {
#ifdef WANRT_HAVE_FFMPEG
  if (!avcodec_find_encoder_by_name("libx264"))
    return "the FFmpeg libraries here have no libx264 encoder";
  if (width % 2 != 0 || height % 2 != 0)
    return str_cat("yuv420p H.264 needs an even width and height, the video is ", width, "x",
                   height);
  return {};
#else
  (void)width;
  (void)height;
  return "this wanrt was built without FFmpeg's libraries (libavcodec, libavformat, libswscale)";
#endif
}

namespace video_detail {

void write_mp4_h264(const std::string& file_path, const std::string& shown_path,
                    const Tensor& frames, int fps, int crf) {
#ifdef WANRT_HAVE_FFMPEG
  quiet_ffmpeg_logging();
  const int64_t frame_count = frames.size(1), height = frames.size(2), width = frames.size(3);
  const std::string reason = mp4_unavailable_reason(width, height);
  WANRT_CHECK(reason.empty(), "cannot write MP4 ", shown_path, ": ", reason);
  const AVCodec* codec = avcodec_find_encoder_by_name("libx264");

  AVFormatContext* raw_muxer = nullptr;
  // The format is named: the temporary's name does not end in .mp4.
  int status = avformat_alloc_output_context2(&raw_muxer, nullptr, "mp4", file_path.c_str());
  WANRT_CHECK(status >= 0 && raw_muxer, "cannot write video ", shown_path,
              ": no MP4 muxer (", av_error_text(status), ")");
  std::unique_ptr<AVFormatContext, FormatContextDeleter> muxer(raw_muxer);
  AVStream* stream = avformat_new_stream(muxer.get(), nullptr);
  WANRT_CHECK(stream, "cannot write video ", shown_path, ": out of memory");

  std::unique_ptr<AVCodecContext, CodecContextDeleter> encoder(avcodec_alloc_context3(codec));
  WANRT_CHECK(encoder, "cannot write video ", shown_path, ": out of memory");
  encoder->width = static_cast<int>(width);
  encoder->height = static_cast<int>(height);
  encoder->pix_fmt = AV_PIX_FMT_YUV420P;
  encoder->color_range = AVCOL_RANGE_MPEG;
  encoder->time_base = AVRational{1, fps};
  encoder->framerate = AVRational{fps, 1};
  encoder->thread_count = 0;  // "auto", as the ffmpeg program defaults to (and 81 HD frames need)
  if (muxer->oformat->flags & AVFMT_GLOBALHEADER) encoder->flags |= AV_CODEC_FLAG_GLOBAL_HEADER;
  AVDictionary* codec_options = nullptr;
  av_dict_set(&codec_options, "crf", std::to_string(crf).c_str(), 0);
  status = avcodec_open2(encoder.get(), codec, &codec_options);
  av_dict_free(&codec_options);
  WANRT_CHECK(status >= 0, "cannot write video ", shown_path, ": libx264 did not start (",
              av_error_text(status), ")");
  status = avcodec_parameters_from_context(stream->codecpar, encoder.get());
  WANRT_CHECK(status >= 0, "cannot write video ", shown_path, ": ", av_error_text(status));
  stream->time_base = encoder->time_base;
  stream->avg_frame_rate = encoder->framerate;

  status = avio_open(&muxer->pb, file_path.c_str(), AVIO_FLAG_WRITE);
  WANRT_CHECK(status >= 0, "cannot write video ", shown_path, ": ", av_error_text(status));
  status = avformat_write_header(muxer.get(), nullptr);
  WANRT_CHECK(status >= 0, "cannot write video ", shown_path, ": ", av_error_text(status));

  std::unique_ptr<SwsContext, SwsDeleter> converter(
      sws_getContext(encoder->width, encoder->height, AV_PIX_FMT_RGB24, encoder->width,
                     encoder->height, AV_PIX_FMT_YUV420P, SWS_BICUBIC, nullptr, nullptr, nullptr));
  std::unique_ptr<AVFrame, FrameDeleter> frame(av_frame_alloc());
  std::unique_ptr<AVPacket, PacketDeleter> packet(av_packet_alloc());
  WANRT_CHECK(converter && frame && packet, "cannot write video ", shown_path, ": out of memory");
  frame->format = encoder->pix_fmt;
  frame->width = encoder->width;
  frame->height = encoder->height;
  frame->color_range = AVCOL_RANGE_MPEG;
  status = av_frame_get_buffer(frame.get(), 0);
  WANRT_CHECK(status >= 0, "cannot write video ", shown_path, ": ", av_error_text(status));

  std::vector<uint8_t> rgb;
  for (int64_t index = 0; index < frame_count; ++index) {
    video_frame_rgb8(frames, index, rgb);
    status = av_frame_make_writable(frame.get());  // the encoder may still hold the last one
    WANRT_CHECK(status >= 0, "cannot write video ", shown_path, ": ", av_error_text(status));
    const uint8_t* source_planes[1] = {rgb.data()};
    const int source_strides[1] = {static_cast<int>(width * 3)};
    sws_scale(converter.get(), source_planes, source_strides, 0, encoder->height, frame->data,
              frame->linesize);
    frame->pts = index;
    status = avcodec_send_frame(encoder.get(), frame.get());
    WANRT_CHECK(status >= 0, "cannot write video ", shown_path, ": ", av_error_text(status));
    drain_packets(encoder.get(), muxer.get(), stream, packet.get(), shown_path);
  }
  status = avcodec_send_frame(encoder.get(), nullptr);  // flush the delayed frames
  WANRT_CHECK(status >= 0, "cannot write video ", shown_path, ": ", av_error_text(status));
  drain_packets(encoder.get(), muxer.get(), stream, packet.get(), shown_path);
  status = av_write_trailer(muxer.get());
  WANRT_CHECK(status >= 0, "cannot write video ", shown_path, ": ", av_error_text(status));
  status = avio_closep(&muxer->pb);
  WANRT_CHECK(status >= 0, "cannot write video ", shown_path, ": ", av_error_text(status));
#else
  (void)file_path;
  (void)frames;
  (void)fps;
  (void)crf;
  fail("cannot write MP4 ", shown_path, ": ", mp4_unavailable_reason(0, 0));
#endif
}

}  // namespace video_detail
}  // namespace wanrt
