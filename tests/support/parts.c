/* A test program in named parts (see testutil.h). */
#include "testutil.h"

#include <stdio.h>
#include <string.h>

int tu_run_parts(int argc, char **argv, const struct tu_part *parts,
                 size_t count)
{
    int failed = 0;

    for (size_t i = 0; i < count; i++) {
        const struct tu_part *p = &parts[i];

        if (argc > 1 && strcmp(argv[1], p->name) != 0)
            continue;
        failed += _cmocka_run_group_tests(p->name, p->tests, p->count, p->setup,
                                          p->teardown);
        if (argc > 1)
            return failed;
    }
    if (argc > 1) {
        fprintf(stderr, "%s: no part '%s'; the parts:", argv[0], argv[1]);
        for (size_t i = 0; i < count; i++)
            fprintf(stderr, " %s", parts[i].name);
        fprintf(stderr, "\n");
        return 2;
    }
    return failed;
}
