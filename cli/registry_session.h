// What every command that talks to a registry shares: its flags (--plain-http,
// --certs-dir, --stall-timeout) and the client objects built from them
// (registry::Session: transport, credentials, authorizer, resolver).
#pragma once

#include <memory>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>

#include "oci/reference.h"
#include "registry/session.h"

namespace strata::cli {

struct RegistryFlags {
  bool plain_http = false;
  // certs.d tree: per-host ca.crt/client.cert/client.key and hosts.toml (mirrors).
  std::string certs_dir;  // "" = $STRATA_CERTS_DIR, else /etc/strata/certs.d
  int stall_timeout_seconds = 30;
};

// Adds --plain-http, --certs-dir and --stall-timeout to `command`.
void AddRegistryFlags(CLI::App* command, RegistryFlags& flags);

// The flags as session options (certs_dir resolved from this process's environment).
registry::SessionOptions SessionOptionsFrom(const RegistryFlags& flags);

using RegistrySession = registry::Session;

// `references`: the registries this command talks to; --plain-http applies to their
// upstream hosts. Die()s when the transport cannot be set up.
std::unique_ptr<RegistrySession> OpenRegistrySessionOrDie(const RegistryFlags& flags,
                                                          const std::vector<oci::Reference>& references);

}  // namespace strata::cli
