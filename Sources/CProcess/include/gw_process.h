#ifndef GW_PROCESS_H
#define GW_PROCESS_H
#include <sys/types.h>

/// Forks and execs `path` with `argv` (NULL-terminated) so that the child can never outlive
/// the calling thread's process: PR_SET_PDEATHSIG delivers `death_signal` to it when the
/// parent dies, however it dies (SIGKILL, OOM, a trap). The child gets its own process group
/// (a terminal's Ctrl-C reaches only the parent, which then stops the child in order),
/// stdin from /dev/null, and no descriptor above 2 (no listening socket or lock is inherited).
/// Returns the child's pid, or -1 with errno set.
///
/// PDEATHSIG fires when the *thread* that forked exits: call it from a thread that lives as
/// long as the child should.
pid_t gw_spawn_tied(const char *path, char *const argv[], int death_signal);

#endif
