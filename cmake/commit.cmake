# cmake -DSRC=<source dir> -DOUT=<header> [-DCOMMIT=<id>] -P commit.cmake
# Writes OUT as `#define PUSHGW_COMMIT "<id>"` (pushgw_build_info's commit
# label): COMMIT when given (a build without .git, e.g. the image), else
# the checkout's short hash, "-dirty" when it has changes, else "unknown".
# Rewritten only when the id changes, so a build recompiles only main.c
# and only after a new commit.
if(NOT COMMIT)
    execute_process(COMMAND git -C "${SRC}" rev-parse --short=12 HEAD
        OUTPUT_VARIABLE COMMIT OUTPUT_STRIP_TRAILING_WHITESPACE
        RESULT_VARIABLE rc ERROR_QUIET)
    if(NOT rc EQUAL 0 OR NOT COMMIT)
        set(COMMIT unknown)
    else()
        execute_process(COMMAND git -C "${SRC}" diff --quiet HEAD --
            RESULT_VARIABLE dirty ERROR_QUIET)
        if(NOT dirty EQUAL 0)
            string(APPEND COMMIT -dirty)
        endif()
    endif()
endif()
set(text "#define PUSHGW_COMMIT \"${COMMIT}\"\n")
set(old "")
if(EXISTS "${OUT}")
    file(READ "${OUT}" old)
endif()
if(NOT old STREQUAL text)
    file(WRITE "${OUT}" "${text}")
endif()
