#include <fcntl.h>
#include <sys/prctl.h>
#include <unistd.h>

#include "cli.h"

/*
 * Descriptors 0 to 2 are opened on /dev/null where the caller left them closed, before anything
 * else is opened: the database connection would otherwise take descriptor 1, and the stdout sink
 * write events into it. Descriptor 1 is opened read-only, so that the stdout sink sees that
 * nothing can be written there and says so, rather than send the events nowhere.
 */
static void open_standard_descriptors(void)
{
    static const int modes[] = {O_RDONLY, O_RDONLY, O_WRONLY};
    for (int fd = 0; fd <= 2; fd++) {
        if (fcntl(fd, F_GETFD) != -1)
            continue;
        int opened = open("/dev/null", modes[fd]);
        if (opened >= 0 && opened != fd) {
            dup2(opened, fd);
            close(opened);
        }
    }
}

int main(int argc, char **argv)
{
    open_standard_descriptors();
    /* The process holds the database password in memory: no core dump may carry it away (systemd
     * sends SIGABRT on a watchdog timeout), and no other process of the same user may read its
     * memory through ptrace or /proc. */
    prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
    return relay_cli_main(argc, argv);
}
