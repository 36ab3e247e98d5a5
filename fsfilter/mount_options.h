// The strata-fsfilter command line, compatible with fuse-overlayfs and mount.fuse3:
//   strata-fsfilter [-f] [-d] -o lowerdir=A:B[,upperdir=U,workdir=W][,opts] MOUNTPOINT
//   strata-fsfilter SOURCE MOUNTPOINT -o opts      (mount -t fuse3.strata-fsfilter SOURCE MNT)
//   strata-fsfilter -o windows,lowerdir=L1:L2 MNT  (Windows layer dirs: fsfilter/windows_view.h)
// Paths in lowerdir= may escape ':' and ',' with a backslash.
#pragma once

#include <string>
#include <vector>

#include "base/error.h"
#include "fsfilter/fuse_frontend.h"
#include "fsfilter/layer_chain.h"

namespace strata::fsfilter {

struct CommandLine {
  LayerChainConfig layers;
  // -o windows: lower_dirs are Windows layer dirs (read-only view, OpenWindowsLayerView).
  bool windows_layers = false;
  FuseMountOptions mount;
  bool foreground = false;
  bool help = false;
  bool version = false;
};

// Parses argv (without argv[0]). InvalidArgument naming the offending argument or option:
// unknown options, options fuse-overlayfs has but this program does not support
// (uidmapping=, squash_to_root, ...), a missing mount point or lowerdir, and upperdir=
// with windows ("windows layer views are read-only").
Result<CommandLine> ParseCommandLine(const std::vector<std::string>& args);

std::string UsageText();

}  // namespace strata::fsfilter
