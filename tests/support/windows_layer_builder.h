// Windows container layer tars (PAX, as hcsshim/go-winio write them) for tests: Files/,
// Hives/, UtilityVM/Files/ entries with MSWINDOWS.* and LIBARCHIVE.creationtime records,
// alternate data streams, junctions, Windows-syntax link targets, hard links and whiteouts.
// Built on LayerBuilder (archive::TarWriter); deterministic (fixed times).
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>

#include "archive/tar_writer.h"
#include "base/error.h"
#include "tests/support/image_builder.h"

namespace strata::test_support {

// The self-relative security descriptor O:BUG:BU, base64 (MSWINDOWS.rawsd).
inline constexpr std::string_view kOwnerBuiltinUsersSd =
    "AQAAgBQAAAAkAAAAAAAAAAAAAAABAgAAAAAABSAAAAAhAgAAAQIAAAAAAAUgAAAAIQIAAA==";

// Win32 file attributes (MSWINDOWS.fileattr).
inline constexpr uint32_t kAttrReadonly = 0x1;
inline constexpr uint32_t kAttrHidden = 0x2;
inline constexpr uint32_t kAttrSystem = 0x4;
inline constexpr uint32_t kAttrDirectory = 0x10;
inline constexpr uint32_t kAttrArchive = 0x20;
inline constexpr uint32_t kAttrReparsePoint = 0x400;

// LastWriteTime of every entry unless given: 2023-11-14T22:13:20.5Z.
inline constexpr archive::TarTime kWindowsEntryMtime{1'700'000'000, 500'000'000};

// Per-entry Windows metadata; unset fields write no record.
struct WinAttrs {
  std::optional<uint32_t> fileattr;
  std::string rawsd;                        // base64 self-relative SD
  std::optional<std::string> creationtime;  // LIBARCHIVE.creationtime "secs[.frac]"
  std::optional<std::string> atime;         // LastAccessTime record
  std::optional<std::string> ctime;         // ChangeTime record
  std::map<std::string, std::string> eas;   // EA name -> raw value (written base64)
  archive::TarTime mtime = kWindowsEntryMtime;
};

// Standard base64 (with padding) of raw bytes.
std::string Base64(std::string_view raw);

// Entries are written in call order; names are used as given (no leading "/" handling).
class WindowsLayerBuilder {
 public:
  WindowsLayerBuilder& Dir(std::string path, WinAttrs attrs = {});
  WindowsLayerBuilder& File(std::string path, std::string content, WinAttrs attrs = {});
  // An ADS entry "<file>:<stream>" (or "<file>:<stream>:$DATA" when `data_suffix`), no records.
  WindowsLayerBuilder& Stream(std::string file, std::string stream, std::string content, bool data_suffix = false);
  // A symlink reparse point (typeflag 2) with a Windows-syntax target.
  WindowsLayerBuilder& Symlink(std::string path, std::string target, WinAttrs attrs = {});
  // A junction: typeflag 2 with MSWINDOWS.mountpoint=1.
  WindowsLayerBuilder& Junction(std::string path, std::string target, WinAttrs attrs = {});
  WindowsLayerBuilder& Hardlink(std::string path, std::string target, WinAttrs attrs = {});
  // A bare ".wh.<name>" tombstone for `path`.
  WindowsLayerBuilder& Whiteout(std::string path);
  // Any entry exactly as given (hostile names, odd types).
  WindowsLayerBuilder& Entry(archive::TarEntry entry, std::string content = {});

  size_t entry_count() const { return layer_.entry_count(); }
  Result<std::string> Tar() const { return layer_.Tar(); }
  // The tar compressed as a pushable layer, digests computed (LayerBuilder::Build).
  Result<Layer> Build(Compression compression = Compression::kGzip) const { return layer_.Build(compression); }

 private:
  WindowsLayerBuilder& Add(archive::TarEntryType type, std::string path, const WinAttrs& attrs, std::string content,
                           std::string linkname, std::map<std::string, std::string> extra = {});
  LayerBuilder layer_;
};

// A base layer with every feature: Files/ with the five config hives, hidden/system
// attributes, security descriptors, EAs, creation/access/change times, a junction, a dir and
// a file symlink with Windows targets, ADS in both name forms (on a file and on a dir),
// non-ASCII names, hard links inside Files/ and from UtilityVM/Files to Files/.
WindowsLayerBuilder WindowsBaseLayer();

// A delta over WindowsBaseLayer(): Hives/*_Delta, tombstones of a base file and a base dir
// (inside a dir whose own entry comes first: the CatRoot case), a hard link to a base-layer
// file, modified files, a new file with a stream.
WindowsLayerBuilder WindowsDeltaLayer();

// Paths the fixtures above use (tests check them on disk).
inline constexpr std::string_view kBaseDeletedFile = "Files/Windows/System32/notepad.exe";
inline constexpr std::string_view kBaseDeletedDir = "Files/Windows/System32/CatRoot/{F750E6C3-38EE-11D1-85E5-00C04FC295EE}";
inline constexpr std::string_view kDeltaCatRootDir = "Files/Windows/System32/CatRoot";
inline constexpr archive::TarTime kDeltaCatRootMtime{1'710'000'000, 123'456'700};
inline constexpr std::string_view kDeltaParentLink = "Files/Users/Public/linked.txt";
inline constexpr std::string_view kDeltaParentLinkTarget = "Files/Users/Zoë/日本語.txt";

}  // namespace strata::test_support
