#include "bench/test_data.h"

#include <fcntl.h>

#include <system_error>

#include <fmt/format.h>

namespace strata::bench {

namespace fs = std::filesystem;

Status WriteMixedContent(SeededRandom& random, uint64_t size, const MixedContent& mix, std::string& block,
                         const std::function<Status(std::string_view)>& write) {
  block.resize(mix.block_size);
  for (uint64_t done = 0; done < size;) {
    const size_t n = static_cast<size_t>(std::min<uint64_t>(mix.block_size, size - done));
    const size_t generated = mix.whole_blocks ? mix.block_size : n;
    const size_t random_n = static_cast<size_t>(static_cast<double>(generated) * mix.random_share) & ~size_t{7};
    random.Fill(block.data(), random_n);
    for (size_t at = random_n; at < generated;) {
      const std::string_view line = mix.lines[random.Below(mix.lines.size())];
      const size_t take = std::min(line.size(), generated - at);
      std::memcpy(block.data() + at, line.data(), take);
      at += take;
    }
    STRATA_RETURN_IF_ERROR(write(std::string_view(block.data(), n)));
    done += n;
  }
  return {};
}

Result<std::unique_ptr<GzipBlobWriter>> GzipBlobWriter::Open(const fs::path& path, int level) {
  STRATA_ASSIGN_OR_RETURN(UniqueFd fd, OpenFile(path, O_WRONLY | O_CREAT | O_TRUNC));
  std::unique_ptr<GzipBlobWriter> writer(new GzipBlobWriter(std::move(fd)));
  if (deflateInit2(&writer->stream_, level, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) != Z_OK) {
    return Fail(ErrorCode::kInternal, "deflateInit2 failed");
  }
  writer->initialised_ = true;
  return writer;
}

GzipBlobWriter::~GzipBlobWriter() {
  if (initialised_) deflateEnd(&stream_);
}

Status GzipBlobWriter::Write(std::string_view data) {
  uncompressed_.Update(data);
  return Deflate(data, Z_NO_FLUSH);
}

Result<GzipLayer> GzipBlobWriter::Finish() {
  STRATA_RETURN_IF_ERROR(Deflate({}, Z_FINISH));
  GzipLayer done;
  done.blob.size = compressed_.bytes();
  done.tar_bytes = uncompressed_.bytes();
  done.blob.digest = compressed_.Finish();
  done.diff_id = uncompressed_.Finish();
  return done;
}

Status GzipBlobWriter::Deflate(std::string_view data, int flush) {
  stream_.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(data.data()));
  stream_.avail_in = static_cast<uInt>(data.size());
  int rc = Z_OK;
  do {
    stream_.next_out = reinterpret_cast<Bytef*>(out_.data());
    stream_.avail_out = static_cast<uInt>(out_.size());
    rc = deflate(&stream_, flush);
    if (rc == Z_STREAM_ERROR) return Fail(ErrorCode::kInternal, "deflate failed");
    const std::string_view produced(out_.data(), out_.size() - stream_.avail_out);
    compressed_.Update(produced);
    STRATA_RETURN_IF_ERROR(WriteAll(fd_.get(), produced));
  } while (stream_.avail_out == 0 || (flush == Z_FINISH && rc != Z_STREAM_END));
  return {};
}

Status MakeDirs(const fs::path& dir) {
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) return Fail(ErrorCode::kInternal, "mkdir {}: {}", dir.native(), ec.message());
  return {};
}

Status CommitBlob(const fs::path& blobs, const fs::path& partial, const Digest& digest) {
  std::error_code ec;
  fs::rename(partial, blobs / digest.hex(), ec);
  if (ec) return Fail(ErrorCode::kInternal, "rename {}: {}", partial.native(), ec.message());
  return {};
}

std::string DescriptorJson(std::string_view media_type, const BlobRef& blob) {
  return fmt::format(R"({{"mediaType":"{}","digest":"{}","size":{}}})", media_type, blob.digest.ToString(), blob.size);
}

Result<BlobRef> WriteJsonBlob(const fs::path& blobs, std::string_view json) {
  BlobRef ref{Digest::Of(json), json.size()};
  STRATA_RETURN_IF_ERROR(AtomicWriteFile(blobs / ref.digest.hex(), json));
  return ref;
}

Status FinishLayout(const fs::path& layout, std::span<const GzipLayer> layers, std::string_view container_config,
                    TestImage& image) {
  const fs::path blobs = layout / "blobs" / "sha256";
  std::string descriptors;
  std::string diff_ids;
  image.compressed_bytes = 0;
  image.tar_bytes = 0;
  for (size_t i = 0; i < layers.size(); ++i) {
    descriptors += fmt::format("{}{}", i ? "," : "", DescriptorJson(kOciLayerGzipType, layers[i].blob));
    diff_ids += fmt::format(R"({}"{}")", i ? "," : "", layers[i].diff_id.ToString());
    image.compressed_bytes += layers[i].blob.size;
    image.tar_bytes += layers[i].tar_bytes;
  }
  image.layers = static_cast<int>(layers.size());
  STRATA_ASSIGN_OR_RETURN(
      const BlobRef config,
      WriteJsonBlob(blobs, fmt::format(R"({{"architecture":"amd64","os":"linux","config":{},)"
                                       R"("rootfs":{{"type":"layers","diff_ids":[{}]}}}})",
                                       container_config, diff_ids)));
  STRATA_ASSIGN_OR_RETURN(
      const BlobRef manifest,
      WriteJsonBlob(blobs, fmt::format(R"({{"schemaVersion":2,"mediaType":"{}","config":{},"layers":[{}]}})",
                                       kOciManifestType, DescriptorJson(kOciConfigType, config), descriptors)));
  image.manifest_digest = manifest.digest;
  STRATA_RETURN_IF_ERROR(AtomicWriteFile(layout / "oci-layout", R"({"imageLayoutVersion":"1.0.0"})"));
  return AtomicWriteFile(
      layout / "index.json",
      fmt::format(R"({{"schemaVersion":2,"manifests":[{{"mediaType":"{}","digest":"{}","size":{},)"
                  R"("annotations":{{"org.opencontainers.image.ref.name":"1"}}}}]}})",
                  kOciManifestType, manifest.digest.ToString(), manifest.size));
}

}  // namespace strata::bench
