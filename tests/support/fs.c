/* Files and folders of tests (see testutil.h). */
#include "testutil.h"

#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

char *tu_mkdtemp(void)
{
    const char *base = getenv("TMPDIR");
    char *path = NULL;

    if (asprintf(&path, "%s/pushgw-test-XXXXXX", base ? base : "/tmp") < 0)
        return NULL;
    if (!mkdtemp(path)) {
        free(path);
        return NULL;
    }
    return path;
}

static int rm_one(const char *path, const struct stat *st, int flag,
                  struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

void tu_rm_rf(const char *path)
{
    if (path)
        nftw(path, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

char *tu_write_file(const char *dir, const char *name, const char *content,
                    int mode)
{
    char *path = NULL;
    FILE *fp;

    if (asprintf(&path, "%s/%s", dir, name) < 0)
        return NULL;
    fp = fopen(path, "w");
    if (!fp) {
        free(path);
        return NULL;
    }
    fputs(content, fp);
    fclose(fp);
    chmod(path, (mode_t)mode);
    return path;
}

char *tu_read_file(const char *path)
{
    FILE *fp = fopen(path, "rb");
    char *buf = NULL;
    size_t len = 0, cap = 0, n;

    if (!fp)
        return NULL;
    do {
        if (len + 4096 + 1 > cap) {
            cap = cap ? cap * 2 : 8192;
            char *nb = realloc(buf, cap);
            if (!nb) {
                free(buf);
                fclose(fp);
                return NULL;
            }
            buf = nb;
        }
        n = fread(buf + len, 1, 4096, fp);
        len += n;
    } while (n > 0);
    fclose(fp);
    buf[len] = '\0';
    return buf;
}

char *tu_path(const char *dir, const char *name)
{
    char *p = NULL;

    if (asprintf(&p, "%s/%s", dir, name) < 0)
        fail_msg("out of memory");
    return p;
}
