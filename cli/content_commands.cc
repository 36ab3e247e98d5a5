// `strata content ls|info|get|rm|ingest`: the content store, as `ctr content` shows it.
#include <fcntl.h>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include "base/file.h"
#include "base/log.h"
#include "cli/app.h"
#include "cli/format.h"
#include "store/store.h"

namespace strata::cli {
namespace {

using json = nlohmann::ordered_json;

json InfoJson(const store::ContentInfo& info) {
  return {{"digest", info.digest.ToString()},
          {"size", info.size},
          {"created_at", store::FormatTimestamp(info.created_at)},
          {"updated_at", store::FormatTimestamp(info.updated_at)},
          {"labels", info.labels}};
}

Digest ParseDigestOrDie(const std::string& text) { return OrDie(Digest::Parse(text)); }

struct IngestArgs {
  std::string ref;
  std::string expected;
  int64_t size = 0;
  std::vector<std::string> labels;
  std::string input = "-";
};

void Ingest(const GlobalOptions& options, const IngestArgs& args) {
  std::optional<Digest> expected;
  if (!args.expected.empty()) expected = ParseDigestOrDie(args.expected);
  auto labels = ParseLabelsOrDie(args.labels);
  UniqueFd owned;
  int in = STDIN_FILENO;
  if (args.input != "-") {
    owned = OrDie(OpenFile(args.input, O_RDONLY));
    in = owned.get();
  }
  auto store = OpenStoreOrDie(options);
  // Without --ref, a ref of this run alone: a killed run's ingest must not be resumed by a
  // later run that got the same pid (pid namespaces), splicing two inputs into one blob.
  std::string ref = args.ref.empty() ? fmt::format("cli-ingest-{}-{}", getpid(), store::ToUnixNanos(store::Now()))
                                     : args.ref;
  auto writer = OrDie(store->content().Writer(ref, {.total = args.size, .expected = expected}));
  if (writer->offset() > 0) spdlog::info("resuming ingest {:?} at offset {}", ref, writer->offset());
  // A resumed ingest continues where the input continues: skip what is already written
  // (seek when the input can, read and drop otherwise).
  std::string buffer(1 << 20, '\0');
  if (writer->offset() > 0 && lseek(in, writer->offset(), SEEK_SET) < 0) {
    for (int64_t skipped = 0; skipped < writer->offset();) {
      size_t want = static_cast<size_t>(std::min<int64_t>(writer->offset() - skipped, buffer.size()));
      ssize_t n = read(in, buffer.data(), want);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) Die(Error(ErrorCode::kFailedPrecondition, fmt::format("input ended before the {} bytes ingest {:?} already has", writer->offset(), ref)));
      skipped += n;
    }
  }
  while (true) {
    ssize_t n = read(in, buffer.data(), buffer.size());
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) Die(Error(ErrorCode::kInternal, fmt::format("read {}: {}", args.input, strerror(errno))));
    if (n == 0) break;
    OrDie(writer->Write(std::string_view(buffer.data(), static_cast<size_t>(n))));
  }
  auto info = OrDie(writer->Commit(args.size, expected, labels));
  if (options.json) {
    fmt::print("{}\n", JsonText(InfoJson(info), 2));
  } else {
    fmt::print("{}\n", info.digest);
  }
}

}  // namespace

void AddContentCommands(CLI::App& app, const GlobalOptions& options) {
  auto* content = app.add_subcommand("content", "Inspect and manage the content store (blobs)");
  content->require_subcommand(1);

  auto* ls = content->add_subcommand("ls", "List blobs, optionally filtered (e.g. labels.\"containerd.io/gc.root\")");
  struct LsArgs {
    std::vector<std::string> filters;
    bool quiet = false;
  };
  auto ls_args = std::make_shared<LsArgs>();
  ls->add_option("filter", ls_args->filters, "containerd filter expressions (ORed)");
  ls->add_flag("-q,--quiet", ls_args->quiet, "Print digests only");
  ls->callback([&options, ls_args] {
    auto filter = OrDie(store::Filter::Parse(ls_args->filters));
    auto store = OpenStoreOrDie(options);
    std::vector<store::ContentInfo> infos;
    OrDie(store->content().Walk(filter, [&](const store::ContentInfo& info) {
      infos.push_back(info);
      return true;
    }));
    if (options.json) {
      json out = json::array();
      for (const auto& info : infos) out.push_back(InfoJson(info));
      fmt::print("{}\n", JsonText(out, 2));
      return;
    }
    if (ls_args->quiet) {
      for (const auto& info : infos) fmt::print("{}\n", info.digest);
      return;
    }
    std::vector<std::vector<std::string>> rows = {{"DIGEST", "SIZE", "AGE", "LABELS"}};
    for (const auto& info : infos) {
      rows.push_back({info.digest.ToString(), HumanSize(info.size), Age(info.created_at), FormatLabels(info.labels)});
    }
    PrintTable(rows);
  });

  auto* info = content->add_subcommand("info", "Show one blob's size, times and labels (JSON)");
  auto info_digest = std::make_shared<std::string>();
  info->add_option("digest", *info_digest, "Blob digest")->required();
  info->callback([&options, info_digest] {
    auto digest = ParseDigestOrDie(*info_digest);
    auto store = OpenStoreOrDie(options);
    fmt::print("{}\n", JsonText(InfoJson(OrDie(store->content().Info(digest))), 2));
  });

  auto* get = content->add_subcommand("get", "Write a blob's bytes to stdout (or -o FILE)");
  struct GetArgs {
    std::string digest;
    std::string output;
  };
  auto get_args = std::make_shared<GetArgs>();
  get->add_option("digest", get_args->digest, "Blob digest")->required();
  get->add_option("-o,--output", get_args->output, "Write to this file instead of stdout");
  get->callback([&options, get_args] {
    auto digest = ParseDigestOrDie(get_args->digest);
    auto store = OpenStoreOrDie(options);
    auto reader = OrDie(store->content().Reader(digest));
    UniqueFd owned;
    int out = STDOUT_FILENO;
    if (!get_args->output.empty()) {
      owned = OrDie(OpenFile(get_args->output, O_WRONLY | O_CREAT | O_TRUNC, 0644));
      out = owned.get();
    }
    std::string buffer(1 << 20, '\0');
    for (int64_t offset = 0; offset < reader->size();) {
      size_t n = OrDie(reader->ReadAt(buffer.data(), buffer.size(), offset));
      if (n == 0) break;
      OrDie(WriteAll(out, std::string_view(buffer.data(), n)));
      offset += static_cast<int64_t>(n);
    }
  });

  auto* rm = content->add_subcommand("rm", "Delete blobs");
  auto rm_digests = std::make_shared<std::vector<std::string>>();
  rm->add_option("digest", *rm_digests, "Blob digests")->required();
  rm->callback([&options, rm_digests] {
    auto store = OpenStoreOrDie(options);
    for (const auto& text : *rm_digests) {
      auto digest = ParseDigestOrDie(text);
      OrDie(store->content().Delete(digest));
      fmt::print("{}\n", digest);
    }
  });

  auto* ingest = content->add_subcommand(
      "ingest", "Add a blob from a file or stdin; an interrupted ingest with the same --ref resumes");
  auto ingest_args = std::make_shared<IngestArgs>();
  ingest->add_option("input", ingest_args->input, "File to read, - for stdin")->capture_default_str();
  ingest->add_option("--ref", ingest_args->ref, "Ingest reference (resumable key); default cli-ingest-<pid>");
  ingest->add_option("--expected", ingest_args->expected, "Digest the content must have");
  ingest->add_option("--size", ingest_args->size, "Size the content must have");
  ingest->add_option("--label", ingest_args->labels, "Label KEY=VALUE (repeatable)")->allow_extra_args(false);
  ingest->callback([&options, ingest_args] { Ingest(options, *ingest_args); });
}

}  // namespace strata::cli
