/* sd_notify(3) over a plain unix datagram socket: see sdnotify.h. */
#include "sdnotify.h"

#include <errno.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "pushgw.h"

int pgw_sdnotify_send(const char *state)
{
    const char *name = getenv("NOTIFY_SOCKET");
    struct sockaddr_un sa;
    size_t name_len, state_len = strlen(state);
    socklen_t sa_len;
    ssize_t n;
    int fd, saved;

    if (!name || !*name)
        return 0;
    name_len = strlen(name);
    if ((name[0] != '/' && name[0] != '@') || name_len >= sizeof(sa.sun_path))
        return PGW_ERR_INVAL;
    if (state_len > PGW_SDNOTIFY_MAX_BYTES)
        return PGW_ERR_INVAL;
    memset(&sa, 0, sizeof(sa));
    sa.sun_family = AF_UNIX;
    memcpy(sa.sun_path, name, name_len);
    /* An abstract name starts with a NUL and is not NUL-terminated. */
    if (name[0] == '@')
        sa.sun_path[0] = '\0';
    sa_len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + name_len +
                         (name[0] == '@' ? 0 : 1));

    fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return PGW_ERR_IO;
    n = sendto(fd, state, state_len, MSG_NOSIGNAL, (struct sockaddr *)&sa,
               sa_len);
    saved = errno;
    close(fd);
    errno = saved;
    return n == (ssize_t)state_len ? 1 : PGW_ERR_IO;
}

uint64_t pgw_sdnotify_watchdog_usec(void)
{
    const char *usec = getenv("WATCHDOG_USEC");
    const char *pid = getenv("WATCHDOG_PID");
    unsigned long long v;
    char *end;

    if (!usec || !*usec)
        return 0;
    /* Meant for another process (a parent that passed its environment). */
    if (pid && *pid && strtoll(pid, NULL, 10) != (long long)getpid())
        return 0;
    errno = 0;
    v = strtoull(usec, &end, 10);
    if (errno || *end || v == 0)
        return 0;
    return (uint64_t)v;
}
