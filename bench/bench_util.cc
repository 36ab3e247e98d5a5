#include "bench/bench_util.h"

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <thread>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "base/file.h"

extern char** environ;

namespace strata::bench {

void CommandLine::Usage(int status) const {
  std::fprintf(status == 0 ? stdout : stderr, "usage: %s %s\n", program_.c_str(), synopsis_.c_str());
  std::exit(status);
}

void CommandLine::BadNumber(std::string_view flag, std::string_view text) const {
  std::fprintf(stderr, "%s: %.*s wants a positive number, got \"%.*s\"\n", program_.c_str(),
               static_cast<int>(flag.size()), flag.data(), static_cast<int>(text.size()), text.data());
  Usage(2);
}

std::vector<std::string> CommandLine::Choices(std::string_view flag, std::string_view text,
                                              const std::vector<std::string_view>& allowed) const {
  std::vector<std::string> chosen;
  for (const std::string_view item : SplitCommaList(text)) {
    if (std::find(allowed.begin(), allowed.end(), item) == allowed.end()) {
      std::fprintf(stderr, "%s: %.*s: unknown '%.*s' (%s)\n", program_.c_str(), static_cast<int>(flag.size()),
                   flag.data(), static_cast<int>(item.size()), item.data(), fmt::format("{}", fmt::join(allowed, ", ")).c_str());
      Usage(2);
    }
    if (std::find(chosen.begin(), chosen.end(), item) == chosen.end()) chosen.emplace_back(item);
  }
  return chosen;
}

void CommandLine::Parse(int argc, char** argv,
                        const std::function<bool(std::string_view, std::string_view)>& on_flag) const {
  for (int i = 1; i < argc; ++i) {
    const std::string_view arg = argv[i];
    if (arg == "--help" || arg == "-h") Usage(0);
    if (i + 1 >= argc) Usage(2);
    const std::string_view value = argv[++i];
    if (!on_flag(arg, value)) Usage(2);
  }
}

void RandomBytes::Fill(char* out, size_t size) {
  size_t i = 0;
  for (; i + 8 <= size; i += 8) {
    state_ ^= state_ >> 12;
    state_ ^= state_ << 25;
    state_ ^= state_ >> 27;
    const uint64_t word = state_ * 0x2545F4914F6CDD1Dull;
    std::memcpy(out + i, &word, 8);
  }
  // A tail shorter than a word: its position, as the first digest benchmark did.
  for (; i < size; ++i) out[i] = static_cast<char>(position_ + i);
  position_ += size;
}

std::vector<std::string_view> SplitCommaList(std::string_view value) {
  std::vector<std::string_view> items;
  for (size_t start = 0; start <= value.size();) {
    const size_t comma = std::min(value.find(',', start), value.size());
    items.push_back(value.substr(start, comma - start));
    start = comma + 1;
  }
  return items;
}

std::filesystem::path StrataNextToSelf() {
  std::error_code ec;
  return std::filesystem::read_symlink("/proc/self/exe", ec).parent_path() / "strata";
}

std::optional<TempDir> CreateWorkDir(std::string_view prefix, const std::filesystem::path& work_dir) {
  // TempDir makes its directory under $TMPDIR; the children (skopeo) then keep theirs there too.
  if (!work_dir.empty()) ::setenv("TMPDIR", work_dir.c_str(), 1);
  Result<TempDir> work = TempDir::Create(prefix);
  if (!work) {
    std::fprintf(stderr, "%s\n", work.error().ToString().c_str());
    return std::nullopt;
  }
  return std::move(*work);
}

std::string MakeRandomBuffer(size_t size) {
  std::string buffer(size, '\0');
  RandomBytes().Fill(buffer.data(), size);
  return buffer;
}

Status WriteRandomFile(const std::filesystem::path& path, size_t size) {
  STRATA_ASSIGN_OR_RETURN(UniqueFd fd, OpenFile(path, O_WRONLY | O_CREAT | O_TRUNC));
  RandomBytes random;
  std::string chunk(kChunk, '\0');
  for (size_t done = 0; done < size;) {
    const size_t n = std::min(kChunk, size - done);
    random.Fill(chunk.data(), n);
    STRATA_RETURN_IF_ERROR(WriteAll(fd.get(), std::string_view(chunk.data(), n)));
    done += n;
  }
  if (::fdatasync(fd.get()) != 0) {
    return Fail(ErrorCode::kInternal, "fdatasync {}: {}", path.native(), std::strerror(errno));
  }
  return {};
}

Result<Digest> HashFile(const std::filesystem::path& path) {
  STRATA_ASSIGN_OR_RETURN(UniqueFd fd, OpenFile(path, O_RDONLY));
  std::unique_ptr<char[]> chunk(new char[kChunk]);
  Digester digester;
  while (true) {
    const ssize_t got = ::read(fd.get(), chunk.get(), kChunk);
    if (got < 0) {
      if (errno == EINTR) continue;
      return Fail(ErrorCode::kInternal, "read {}: {}", path.native(), std::strerror(errno));
    }
    if (got == 0) break;
    digester.Update(chunk.get(), static_cast<size_t>(got));
  }
  return digester.Finish();
}

double ResidentFraction(const std::filesystem::path& path) {
  Result<UniqueFd> fd = OpenFile(path, O_RDONLY);
  if (!fd) return -1;
  struct stat st {};
  if (::fstat(fd->get(), &st) != 0) return -1;
  if (st.st_size == 0) return 1;
  const size_t size = static_cast<size_t>(st.st_size);
  void* map = ::mmap(nullptr, size, PROT_READ, MAP_SHARED, fd->get(), 0);
  if (map == MAP_FAILED) return -1;
  const size_t page = static_cast<size_t>(::sysconf(_SC_PAGESIZE));
  const size_t pages = (size + page - 1) / page;
  std::vector<unsigned char> resident(pages);
  const int rc = ::mincore(map, size, resident.data());
  ::munmap(map, size);
  if (rc != 0) return -1;
  const size_t in_core = std::count_if(resident.begin(), resident.end(), [](unsigned char c) { return c & 1; });
  return static_cast<double>(in_core) / static_cast<double>(pages);
}

double EnsureCached(const std::filesystem::path& path) {
  const double before = ResidentFraction(path);
  if (before >= 1) return before;
  if (!HashFile(path)) return -1;
  return ResidentFraction(path);
}

double TimeSeconds(const std::function<void()>& body) {
  const auto start = std::chrono::steady_clock::now();
  body();
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

Timing BestOf(int runs, const std::function<std::string()>& body) {
  Timing timing;
  for (int run = 0; run < runs; ++run) {
    const double seconds = TimeSeconds([&] { timing.output = body(); });
    if (run == 0 || seconds < timing.best_seconds) timing.best_seconds = seconds;
  }
  return timing;
}

double Samples::Median() const {
  std::vector<double> sorted = seconds_;
  std::sort(sorted.begin(), sorted.end());
  const size_t mid = sorted.size() / 2;
  return sorted.size() % 2 == 1 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
}

double Samples::Min() const { return *std::min_element(seconds_.begin(), seconds_.end()); }
double Samples::Max() const { return *std::max_element(seconds_.begin(), seconds_.end()); }

double GigabytesPerSecond(size_t bytes, double seconds) { return static_cast<double>(bytes) / seconds / 1e9; }

std::optional<pid_t> SpawnWithOutput(const std::vector<std::string>& args, int stdout_fd, int stderr_fd) {
  if (args.empty()) return std::nullopt;
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  if (stdout_fd >= 0) posix_spawn_file_actions_adddup2(&actions, stdout_fd, STDOUT_FILENO);
  if (stderr_fd >= 0) posix_spawn_file_actions_adddup2(&actions, stderr_fd, STDERR_FILENO);
  std::vector<char*> argv;
  for (const std::string& arg : args) argv.push_back(const_cast<char*>(arg.c_str()));
  argv.push_back(nullptr);
  pid_t pid = -1;
  const int spawned = posix_spawnp(&pid, argv[0], &actions, nullptr, argv.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  if (spawned != 0) return std::nullopt;
  return pid;
}

bool WaitSucceeded(pid_t pid) {
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0) {
    if (errno != EINTR) return false;
  }
  return WIFEXITED(status) && WEXITSTATUS(status) == 0;
}

pid_t SpawnTiedToThread(const std::vector<std::string>& args, int log_fd) {
  std::vector<char*> argv;
  for (const std::string& arg : args) argv.push_back(const_cast<char*>(arg.c_str()));
  argv.push_back(nullptr);
  const pid_t parent = ::getpid();
  const pid_t pid = ::fork();
  if (pid == 0) {
    // Only async-signal-safe calls until exec.
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (::getppid() != parent) ::_exit(127);
    ::dup2(log_fd, STDOUT_FILENO);
    ::dup2(log_fd, STDERR_FILENO);
    ::execvp(argv[0], argv.data());
    ::_exit(127);
  }
  return pid;
}

void StopChild(pid_t& pid, std::chrono::milliseconds grace) {
  if (pid <= 0) return;
  ::kill(pid, SIGTERM);
  const auto deadline = std::chrono::steady_clock::now() + grace;
  int status = 0;
  while (::waitpid(pid, &status, WNOHANG) == 0) {
    if (std::chrono::steady_clock::now() >= deadline) {
      ::kill(pid, SIGKILL);
      ::waitpid(pid, &status, 0);
      break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  pid = -1;
}

Result<MeasuredRun> RunMeasured(const std::vector<std::string>& args, const std::filesystem::path& stdout_path,
                                const std::filesystem::path& stderr_log) {
  STRATA_ASSIGN_OR_RETURN(UniqueFd out, OpenFile(stdout_path, O_WRONLY | O_CREAT | O_TRUNC));
  STRATA_ASSIGN_OR_RETURN(UniqueFd err, OpenFile(stderr_log, O_WRONLY | O_CREAT | O_APPEND));
  const auto start = std::chrono::steady_clock::now();
  const std::optional<pid_t> pid = SpawnWithOutput(args, out.get(), err.get());
  if (!pid) return Fail(ErrorCode::kInternal, "cannot start {}", args.empty() ? "nothing" : args[0]);
  MeasuredRun run;
  rusage usage{};
  while (::wait4(*pid, &run.wait_status, 0, &usage) < 0) {
    if (errno != EINTR) return ErrnoFail(errno, "wait4");
  }
  run.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  run.peak_rss_kib = static_cast<uint64_t>(usage.ru_maxrss);
  run.succeeded = WIFEXITED(run.wait_status) && WEXITSTATUS(run.wait_status) == 0;
  return run;
}

uint64_t VmHwmKib(pid_t pid) {
  Result<std::string> status = ReadFile(fmt::format("/proc/{}/status", pid));
  if (!status) return 0;
  const size_t at = status->find("VmHWM:");
  if (at == std::string::npos) return 0;
  return std::strtoull(status->c_str() + at + 6, nullptr, 10);
}

std::optional<std::string> RunCapturingStdout(const std::vector<std::string>& args) {
  if (args.empty()) return std::nullopt;
  int pipe_fds[2];
  if (::pipe2(pipe_fds, O_CLOEXEC) != 0) return std::nullopt;
  UniqueFd read_end(pipe_fds[0]);
  UniqueFd write_end(pipe_fds[1]);
  std::optional<pid_t> pid = SpawnWithOutput(args, write_end.get(), -1);
  write_end.reset();  // so that reading ends when the child exits
  if (!pid) return std::nullopt;

  std::string output;
  char buffer[4096];
  while (true) {
    const ssize_t got = ::read(read_end.get(), buffer, sizeof buffer);
    if (got < 0 && errno == EINTR) continue;
    if (got <= 0) break;
    output.append(buffer, static_cast<size_t>(got));
  }
  if (!WaitSucceeded(*pid)) return std::nullopt;
  return output;
}

std::string MachineLoad::Describe() const {
  return fmt::format("load average {:.2f} on {} CPUs before the run{}", one_minute, cpus,
                     busy() ? " -- machine busy, figures understate throughput" : "");
}

MachineLoad ReadMachineLoad() {
  MachineLoad load;
  load.cpus = std::thread::hardware_concurrency();
  if (Result<std::string> text = ReadFile("/proc/loadavg")) load.one_minute = std::strtod(text->c_str(), nullptr);
  return load;
}

std::string MarkdownTable::Render() const {
  std::string out = "|";
  for (const Column& column : columns_) out += fmt::format(" {} |", column.title);
  out += "\n|";
  for (const Column& column : columns_) out += column.align == Align::kLeft ? "---|" : "---:|";
  out += "\n";
  for (const std::vector<std::string>& row : rows_) {
    out += "|";
    for (const std::string& cell : row) out += fmt::format(" {} |", cell);
    out += "\n";
  }
  return out;
}

void PeakRssTable::Add(std::string operation, std::string program, const Samples& megabytes,
                       std::string measured_as) {
  if (megabytes.count() == 0) return;
  rows_.push_back({std::move(operation), std::move(program),
                   fmt::format("{:.0f} ({:.0f}-{:.0f})", megabytes.Median(), megabytes.Min(), megabytes.Max()),
                   std::move(measured_as)});
}

std::string PeakRssTable::Render() const {
  if (rows_.empty()) return {};
  MarkdownTable table({{"operation", MarkdownTable::Align::kLeft},
                       {"program", MarkdownTable::Align::kLeft},
                       {"peak RSS MB, median (min-max)"},
                       {"measured as", MarkdownTable::Align::kLeft}});
  for (const Row& row : rows_) table.AddRow({row.operation, row.program, row.value, row.measured_as});
  return "### Peak RSS\n\n" + table.Render();
}

}  // namespace strata::bench
