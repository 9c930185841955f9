// How a sibling module (dispatcher, working and offloading cores, NFs, egress)
// links to its shard manager: found by name at Init, counters registered, and
// unregistered at DeInit only while that manager still exists.
#ifndef DYSSECT_MANAGER_LINK_H_
#define DYSSECT_MANAGER_LINK_H_

#include <string>

#include "dyssect_plugin.h"

namespace dyssect_bess {

// The manager the module's arg names ("dyssect" unless it names another);
// *name is set either way. nullptr: none (see NoManager).
template <typename Arg>
DyssectShardManager *FindManager(const Arg &arg, std::string *name) {
  *name = arg.manager().empty() ? std::string("dyssect") : arg.manager();
  return DyssectShardManager::Find(*name);
}

inline CommandResponse NoManager(const std::string &name) {
  return CommandFailure(ENOENT, "no DyssectShardManager named %s", name.c_str());
}

// A sibling module's DeInit: unregister its counters only while the manager it
// registered with still exists (the manager may be destroyed first). True when
// it did, so the caller can undo what else it published to that manager.
inline bool UnregisterFromManager(const std::string &name, DyssectShardManager *mine,
                                  CounterBlock *cnt) {
  DyssectShardManager *m = DyssectShardManager::Find(name);
  if (m == nullptr || m != mine) {
    return false;
  }
  m->Unregister(cnt);
  return true;
}

}  // namespace dyssect_bess

#endif  // DYSSECT_MANAGER_LINK_H_
