#define _GNU_SOURCE
#include "gw_process.h"
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

pid_t gw_spawn_tied(const char *path, char *const argv[], int death_signal) {
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid != 0) return pid;
    /* Child: only async-signal-safe calls from here to exec. */
    if (prctl(PR_SET_PDEATHSIG, death_signal) != 0) _exit(126);
    /* The parent may have died between fork and prctl: then nobody would signal us. */
    if (getppid() != parent) _exit(126);
    setpgid(0, 0);
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    signal(SIGPIPE, SIG_DFL);
    int null = open("/dev/null", O_RDONLY);
    if (null >= 0) { dup2(null, 0); if (null > 0) close(null); }
#ifdef SYS_close_range
    if (syscall(SYS_close_range, 3U, ~0U, 0U) != 0)
#endif
    {
        long max = sysconf(_SC_OPEN_MAX);
        if (max < 0 || max > 65536) max = 65536;
        for (int fd = 3; fd < max; fd++) close(fd);
    }
    execv(path, argv);
    _exit(127);
}
