/* Reading a whole small file (see file.h). */
#include "util/file.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pushgw.h"

int pgw_file_read(const char *path, size_t max_bytes, char **ret_buf,
                  size_t *ret_len)
{
    FILE *fp = fopen(path, "rb");
    char *buf = NULL;
    size_t n = 0;
    int rc, saved_errno;

    if (!fp)
        return PGW_ERR_IO;
    rc = PGW_ERR_NOMEM;
    /* one byte more than allowed tells a file that is too large */
    buf = malloc(max_bytes + 1);
    if (!buf)
        goto out;
    n = fread(buf, 1, max_bytes + 1, fp);
    if (ferror(fp)) {
        rc = PGW_ERR_IO;
        goto out;
    }
    if (n > max_bytes) {
        rc = PGW_ERR_TOO_LARGE;
        goto out;
    }
    buf[n] = '\0';
    *ret_buf = buf;
    *ret_len = n;
    buf = NULL;
    rc = 0;
out:
    saved_errno = errno;
    if (buf) {
        explicit_bzero(buf, n);
        free(buf);
    }
    fclose(fp);
    errno = saved_errno;
    return rc;
}
