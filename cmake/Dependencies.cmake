# Every system dependency comes from a Debian 12 package (scripts/setup installs them).
# Each is exposed as an imported target named strata::dep::<name> so module CMakeLists
# stay short and the way a library was found lives in one place.
find_package(PkgConfig REQUIRED)
find_package(Threads REQUIRED)
find_package(OpenSSL REQUIRED)            # libssl-dev
find_package(ZLIB REQUIRED)               # zlib1g-dev
find_package(CURL REQUIRED)               # libcurl4-openssl-dev
find_package(nlohmann_json REQUIRED)      # nlohmann-json3-dev
find_package(CLI11 REQUIRED)              # libcli11-dev
find_package(fmt REQUIRED)                # libfmt-dev
find_package(spdlog REQUIRED)             # libspdlog-dev
find_package(GTest REQUIRED)              # libgtest-dev
find_package(Protobuf REQUIRED)           # libprotobuf-dev, protobuf-compiler
find_program(GRPC_CPP_PLUGIN grpc_cpp_plugin REQUIRED)  # protobuf-compiler-grpc

pkg_check_modules(ROCKSDB REQUIRED IMPORTED_TARGET rocksdb)    # librocksdb-dev
pkg_check_modules(XXHASH REQUIRED IMPORTED_TARGET libxxhash)   # libxxhash-dev
pkg_check_modules(ZSTD REQUIRED IMPORTED_TARGET libzstd)       # libzstd-dev
pkg_check_modules(ISAL REQUIRED IMPORTED_TARGET libisal)       # libisal-dev
pkg_check_modules(GRPCXX REQUIRED IMPORTED_TARGET grpc++)      # libgrpc++-dev
pkg_check_modules(FUSE3 REQUIRED IMPORTED_TARGET fuse3)        # libfuse3-dev
