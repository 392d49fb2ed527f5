#!/bin/sh
# The image's entrypoint: `docker run IMAGE [COMMAND] [ARGS]`, COMMAND one
# of pushgw's (serve, the default; migrate; check-config; render; version;
# help). The commands that read a config get `-c /etc/pushgw/pushgw.ini`
# (the image's, or yours mounted over it; $PUSHGW_CONFIG names another)
# unless ARGS has -c. Anything else runs as given (e.g. `sh`). pushgw is
# exec'd, so it is PID 1 and gets `docker stop`'s SIGTERM itself.
set -e
cmd=${1:-serve}
[ $# -gt 0 ] && shift
case $cmd in
serve | migrate | check-config | render)
    for a in "$@"; do
        case $a in -c | -c* | --config | --config=*) exec pushgw "$cmd" "$@" ;; esac
    done
    exec pushgw "$cmd" -c "${PUSHGW_CONFIG:-/etc/pushgw/pushgw.ini}" "$@"
    ;;
version | --version | help | --help | -h)
    exec pushgw "$cmd" "$@"
    ;;
*)
    exec "$cmd" "$@"
    ;;
esac
