/*
 * Reading a whole small file (keys, service accounts, templates) with a
 * size cap, the one way.
 */
#ifndef PUSHGW_UTIL_FILE_H
#define PUSHGW_UTIL_FILE_H

#include <stddef.h>

/*
 * Reads the file |path| whole into a new buffer, followed by a NUL that
 * |*ret_len| does not count; free it with free() (wipe it first when it
 * holds a secret). Errors: PGW_ERR_IO (cannot open or read; errno says
 * why), PGW_ERR_TOO_LARGE (more than |max_bytes|), PGW_ERR_NOMEM. On an
 * error, what was read is wiped before it is freed.
 */
int pgw_file_read(const char *path, size_t max_bytes, char **ret_buf,
                  size_t *ret_len);

#endif
