// LD_PRELOAD shim for power_loss_test's negative control: fsync(2) and syncfs(2) report
// success and do nothing, as a store that forgot its barriers would behave. (fdatasync is
// left alone: RocksDB's WAL still syncs, so records survive and name lost data.)
extern "C" int fsync(int) { return 0; }
extern "C" int syncfs(int) { return 0; }
