#include "tests/support/windows_layer_builder.h"

#include <utility>

namespace strata::test_support {
namespace {

using archive::TarEntry;
using archive::TarEntryType;

constexpr uint32_t kDirAttrs = kAttrDirectory;
constexpr uint32_t kDirLinkAttrs = kAttrDirectory | kAttrReparsePoint;

WinAttrs FileAttrs(uint32_t fileattr = kAttrArchive) {
  WinAttrs attrs;
  attrs.fileattr = fileattr;
  attrs.rawsd = std::string(kOwnerBuiltinUsersSd);
  attrs.creationtime = "1600000000.1234567";
  return attrs;
}

WinAttrs DirAttrs(uint32_t fileattr = kDirAttrs) { return FileAttrs(fileattr); }

}  // namespace

std::string Base64(std::string_view raw) {
  static constexpr char kAlphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  size_t i = 0;
  for (; i + 2 < raw.size(); i += 3) {
    uint32_t v = (static_cast<uint8_t>(raw[i]) << 16) | (static_cast<uint8_t>(raw[i + 1]) << 8) |
                 static_cast<uint8_t>(raw[i + 2]);
    out += kAlphabet[(v >> 18) & 63];
    out += kAlphabet[(v >> 12) & 63];
    out += kAlphabet[(v >> 6) & 63];
    out += kAlphabet[v & 63];
  }
  if (i + 1 == raw.size()) {
    uint32_t v = static_cast<uint8_t>(raw[i]) << 16;
    out += kAlphabet[(v >> 18) & 63];
    out += kAlphabet[(v >> 12) & 63];
    out += "==";
  } else if (i + 2 == raw.size()) {
    uint32_t v = (static_cast<uint8_t>(raw[i]) << 16) | (static_cast<uint8_t>(raw[i + 1]) << 8);
    out += kAlphabet[(v >> 18) & 63];
    out += kAlphabet[(v >> 12) & 63];
    out += kAlphabet[(v >> 6) & 63];
    out += '=';
  }
  return out;
}

WindowsLayerBuilder& WindowsLayerBuilder::Add(TarEntryType type, std::string path, const WinAttrs& attrs,
                                              std::string content, std::string linkname,
                                              std::map<std::string, std::string> extra) {
  TarEntry entry;
  entry.name = std::move(path);
  entry.type = type;
  entry.mode = 0;  // Windows headers carry type bits only
  entry.mtime = attrs.mtime;
  entry.linkname = std::move(linkname);
  if (attrs.fileattr) entry.pax_records["MSWINDOWS.fileattr"] = std::to_string(*attrs.fileattr);
  if (!attrs.rawsd.empty()) entry.pax_records["MSWINDOWS.rawsd"] = attrs.rawsd;
  if (attrs.creationtime) entry.pax_records["LIBARCHIVE.creationtime"] = *attrs.creationtime;
  if (attrs.atime) entry.pax_records["atime"] = *attrs.atime;
  if (attrs.ctime) entry.pax_records["ctime"] = *attrs.ctime;
  for (const auto& [name, value] : attrs.eas) entry.pax_records["MSWINDOWS.xattr." + name] = Base64(value);
  for (auto& [key, value] : extra) entry.pax_records[key] = std::move(value);
  layer_.Entry(std::move(entry), std::move(content));
  return *this;
}

WindowsLayerBuilder& WindowsLayerBuilder::Dir(std::string path, WinAttrs attrs) {
  if (!attrs.fileattr) attrs.fileattr = kDirAttrs;
  return Add(TarEntryType::kDirectory, std::move(path), attrs, {}, {});
}

WindowsLayerBuilder& WindowsLayerBuilder::File(std::string path, std::string content, WinAttrs attrs) {
  return Add(TarEntryType::kRegular, std::move(path), attrs, std::move(content), {});
}

WindowsLayerBuilder& WindowsLayerBuilder::Stream(std::string file, std::string stream, std::string content,
                                                 bool data_suffix) {
  while (!file.empty() && file.back() == '/') file.pop_back();
  TarEntry entry;
  entry.name = file + ":" + stream + (data_suffix ? ":$DATA" : "");
  entry.mode = 0;
  entry.mtime = kWindowsEntryMtime;
  layer_.Entry(std::move(entry), std::move(content));
  return *this;
}

WindowsLayerBuilder& WindowsLayerBuilder::Symlink(std::string path, std::string target, WinAttrs attrs) {
  if (!attrs.fileattr) attrs.fileattr = kAttrArchive | kAttrReparsePoint;
  return Add(TarEntryType::kSymlink, std::move(path), attrs, {}, std::move(target));
}

WindowsLayerBuilder& WindowsLayerBuilder::Junction(std::string path, std::string target, WinAttrs attrs) {
  if (!attrs.fileattr) attrs.fileattr = kDirLinkAttrs;
  return Add(TarEntryType::kSymlink, std::move(path), attrs, {}, std::move(target), {{"MSWINDOWS.mountpoint", "1"}});
}

WindowsLayerBuilder& WindowsLayerBuilder::Hardlink(std::string path, std::string target, WinAttrs attrs) {
  return Add(TarEntryType::kHardLink, std::move(path), attrs, {}, std::move(target));
}

WindowsLayerBuilder& WindowsLayerBuilder::Whiteout(std::string path) {
  size_t slash = path.rfind('/');
  std::string name = slash == std::string::npos ? ".wh." + path : path.substr(0, slash + 1) + ".wh." + path.substr(slash + 1);
  TarEntry entry;
  entry.name = std::move(name);
  entry.mode = 0;
  entry.mtime = kWindowsEntryMtime;
  layer_.Entry(std::move(entry));
  return *this;
}

WindowsLayerBuilder& WindowsLayerBuilder::Entry(TarEntry entry, std::string content) {
  layer_.Entry(std::move(entry), std::move(content));
  return *this;
}

WindowsLayerBuilder WindowsBaseLayer() {
  WindowsLayerBuilder b;
  WinAttrs timed = FileAttrs();
  timed.atime = "1700000100.25";
  timed.ctime = "1700000200.000000001";
  timed.eas = {{"$KERNEL.PURGE.ESBCACHE", std::string("\x01\x00\x02\xff", 4)}, {".LONGNAME", "notepad"}};

  b.Dir("Files/", DirAttrs())
      .Dir("Files/Windows/", DirAttrs())
      .Dir("Files/Windows/System32/", DirAttrs())
      .Dir("Files/Windows/System32/config/", DirAttrs(kAttrDirectory | kAttrSystem));
  for (const char* hive : {"DEFAULT", "SAM", "SECURITY", "SOFTWARE", "SYSTEM"}) {
    b.File(std::string("Files/Windows/System32/config/") + hive, std::string("regf hive ") + hive,
           FileAttrs(kAttrArchive | kAttrSystem));
  }
  b.File("Files/Windows/System32/notepad.exe", "MZ notepad", timed)
      .Stream("Files/Windows/System32/notepad.exe", "Zone.Identifier", "[ZoneTransfer]\r\nZoneId=3\r\n")
      .Stream("Files/Windows/System32/notepad.exe", "com.example.meta", std::string("\x00\x01 binary", 9), true)
      .File("Files/Windows/System32/kernel32.dll", "MZ kernel32 v1", FileAttrs())
      .Hardlink("Files/Windows/System32/kernel32-alias.dll", "Files/Windows/System32/kernel32.dll", FileAttrs())
      .Dir("Files/Windows/System32/CatRoot/", DirAttrs())
      .Dir(std::string(kBaseDeletedDir) + "/", DirAttrs())
      .File(std::string(kBaseDeletedDir) + "/catdb", "catalog database", FileAttrs())
      .Dir("Files/Windows/System32/drivers/", DirAttrs())
      .Dir("Files/Windows/System32/drivers/etc/", DirAttrs())
      .File("Files/Windows/System32/drivers/etc/hosts", "127.0.0.1 localhost\r\n", FileAttrs())
      .Symlink("Files/Windows/notepad-link.exe", "C:\\Windows\\System32\\notepad.exe")
      .Symlink("Files/Windows/etc", "System32\\drivers\\etc", DirAttrs(kDirLinkAttrs))
      .Dir("Files/ProgramData/", DirAttrs(kAttrDirectory | kAttrHidden | kAttrSystem))
      .File("Files/ProgramData/hidden.dat", "", FileAttrs(kAttrArchive | kAttrHidden | kAttrReadonly))
      .Dir("Files/Users/", DirAttrs())
      .Dir("Files/Users/Public/", DirAttrs())
      .Dir("Files/Users/Zoë/", DirAttrs())
      .File("Files/Users/Zoë/日本語.txt", "こんにちは", FileAttrs())
      .Stream("Files/Users/Zoë/日本語.txt", "ストリーム", "ads with a non-ASCII name")
      .Junction("Files/Documents and Settings", "C:\\Users")
      .Dir("Files/dir-with-stream/", DirAttrs())
      .Stream("Files/dir-with-stream", "meta", "a stream on a directory")
      .Dir("UtilityVM/", DirAttrs())
      .Dir("UtilityVM/Files/", DirAttrs())
      .Dir("UtilityVM/Files/EFI/", DirAttrs())
      .File("UtilityVM/Files/EFI/bootmgfw.efi", "EFI boot manager", FileAttrs())
      .Dir("UtilityVM/Files/Windows/", DirAttrs())
      .Dir("UtilityVM/Files/Windows/System32/", DirAttrs())
      .Hardlink("UtilityVM/Files/Windows/System32/kernel32.dll", "Files/Windows/System32/kernel32.dll", FileAttrs())
      .Hardlink("UtilityVM/Files/Windows/System32/日本語.txt", "Files/Users/Zoë/日本語.txt", FileAttrs());
  return b;
}

WindowsLayerBuilder WindowsDeltaLayer() {
  WindowsLayerBuilder b;
  WinAttrs catroot = DirAttrs();
  catroot.mtime = kDeltaCatRootMtime;
  WinAttrs system32 = DirAttrs();
  system32.mtime = {1'710'000'001, 0};
  b.Dir("Files/", DirAttrs())
      .Dir("Files/Windows/", DirAttrs())
      .Dir("Files/Windows/System32/", system32)
      .Dir(std::string(kDeltaCatRootDir) + "/", catroot)
      .Whiteout(std::string(kBaseDeletedDir))
      .File(std::string(kDeltaCatRootDir) + "/new-catalog.cat", "new catalog", FileAttrs())
      .Whiteout(std::string(kBaseDeletedFile))
      .File("Files/Windows/System32/kernel32.dll", "MZ kernel32 v2 (patched)", FileAttrs())
      .Dir("Files/Users/", DirAttrs())
      .Dir("Files/Users/Public/", DirAttrs())
      .Hardlink(std::string(kDeltaParentLink), std::string(kDeltaParentLinkTarget), FileAttrs())
      .File("Files/Users/Public/readme.txt", "hello from the delta", FileAttrs())
      .Stream("Files/Users/Public/readme.txt", "Zone.Identifier", "[ZoneTransfer]\r\nZoneId=2\r\n", true)
      .Dir("Hives/", DirAttrs());
  for (const char* hive : {"DefaultUser", "Sam", "Security", "Software", "System"}) {
    b.File(std::string("Hives/") + hive + "_Delta", std::string("regf delta ") + hive, FileAttrs());
  }
  return b;
}

}  // namespace strata::test_support
