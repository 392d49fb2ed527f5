/* libpq helpers shared by the store's files (see pgconn.h). */
#include "pgconn.h"

#include "log.h"

const char *pgw_pgconn_one_line(char *buf, size_t size, const char *msg)
{
    size_t j = 0;

    for (size_t i = 0; msg && msg[i] && j + 1 < size; i++) {
        char c = msg[i];
        if (c == '\n' || c == '\r' || c == '\t')
            c = ' ';
        if (c == ' ' && (j == 0 || buf[j - 1] == ' '))
            continue;
        buf[j++] = c;
    }
    while (j > 0 && buf[j - 1] == ' ')
        j--;
    buf[j] = '\0';
    return buf;
}

void pgw_pgconn_log_notice(void *arg, const char *message)
{
    (void)arg;
    pgw_log_debug("postgres: %s", message);
}
