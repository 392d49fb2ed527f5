/* proxy: the proxy URL, the CONNECT request, the proxy's answer. */
#include "proxy.h"
#include "pushgw.h"
#include "testutil.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct url_case {
    const char *url;
    const char *password; /* from a file */
    int rc;
    const char *host, *port, *hostport, *user, *pass;
    const char *why; /* a part of the reason when rc < 0 */
};

static const struct url_case url_cases[] = {
    {"http://proxy.example:3128", NULL, 0, "proxy.example", "3128",
     "proxy.example:3128", NULL, NULL, NULL},
    {"http://proxy.example:3128/", NULL, 0, "proxy.example", "3128",
     "proxy.example:3128", NULL, NULL, NULL},
    {"HTTP://10.0.0.1:8080", NULL, 0, "10.0.0.1", "8080", "10.0.0.1:8080", NULL,
     NULL, NULL},
    {"http://[::1]:3128", NULL, 0, "::1", "3128", "[::1]:3128", NULL, NULL,
     NULL},
    {"http://alice:s3cret@proxy:3128", NULL, 0, "proxy", "3128", "proxy:3128",
     "alice", "s3cret", NULL},
    {"http://alice@proxy:3128", NULL, 0, "proxy", "3128", "proxy:3128", "alice",
     NULL, NULL},
    {"http://alice@proxy:3128", "from-file", 0, "proxy", "3128", "proxy:3128",
     "alice", "from-file", NULL},
    /* percent-decoded; the last '@' ends the userinfo */
    {"http://al%69ce:p%40ss%3Aw@proxy:1", NULL, 0, "proxy", "1", "proxy:1",
     "alice", "p@ss:w", NULL},
    {"http://alice:p@ss@proxy:1", NULL, 0, "proxy", "1", "proxy:1", "alice",
     "p@ss", NULL},
    {"http://alice:@proxy:1", NULL, 0, "proxy", "1", "proxy:1", "alice", "",
     NULL},
    {"https://proxy:3128", NULL, PGW_ERR_INVAL, NULL, NULL, NULL, NULL, NULL,
     "https:// proxies are not supported"},
    {"socks5://proxy:1080", NULL, PGW_ERR_INVAL, NULL, NULL, NULL, NULL, NULL,
     "expected an http:// URL"},
    {"proxy:3128", NULL, PGW_ERR_INVAL, NULL, NULL, NULL, NULL, NULL,
     "expected an http:// URL"},
    {"http://proxy", NULL, PGW_ERR_INVAL, NULL, NULL, NULL, NULL, NULL,
     "no port"},
    {"http://proxy:", NULL, PGW_ERR_INVAL, NULL, NULL, NULL, NULL, NULL,
     "invalid port"},
    {"http://proxy:0", NULL, PGW_ERR_INVAL, NULL, NULL, NULL, NULL, NULL,
     "invalid port"},
    {"http://proxy:65536", NULL, PGW_ERR_INVAL, NULL, NULL, NULL, NULL, NULL,
     "invalid port"},
    {"http://proxy:80x", NULL, PGW_ERR_INVAL, NULL, NULL, NULL, NULL, NULL,
     "invalid port"},
    {"http://:3128", NULL, PGW_ERR_INVAL, NULL, NULL, NULL, NULL, NULL,
     "no host"},
    {"http://", NULL, PGW_ERR_INVAL, NULL, NULL, NULL, NULL, NULL, "no host"},
    {"http://pro xy:3128", NULL, PGW_ERR_INVAL, NULL, NULL, NULL, NULL, NULL,
     "invalid character"},
    {"http://[::1:3128", NULL, PGW_ERR_INVAL, NULL, NULL, NULL, NULL, NULL,
     "unterminated"},
    {"http://proxy:3128/path", NULL, PGW_ERR_INVAL, NULL, NULL, NULL, NULL,
     NULL, "no path"},
    {"http://proxy:3128?x", NULL, PGW_ERR_INVAL, NULL, NULL, NULL, NULL, NULL,
     "no path"},
    {"http://:pw@proxy:1", NULL, PGW_ERR_INVAL, NULL, NULL, NULL, NULL, NULL,
     "empty user name"},
    {"http://alice:%zz@proxy:1", NULL, PGW_ERR_INVAL, NULL, NULL, NULL, NULL,
     NULL, "invalid password"},
    {"http://alice:%00@proxy:1", NULL, PGW_ERR_INVAL, NULL, NULL, NULL, NULL,
     NULL, "invalid password"},
    {"http://al%3Aice:pw@proxy:1", NULL, PGW_ERR_INVAL, NULL, NULL, NULL, NULL,
     NULL, "cannot hold ':'"},
    /* a password from a file wants a user and no inline password */
    {"http://proxy:1", "pw", PGW_ERR_INVAL, NULL, NULL, NULL, NULL, NULL,
     "needs a URL with a user name"},
    {"http://alice:pw@proxy:1", "pw", PGW_ERR_INVAL, NULL, NULL, NULL, NULL,
     NULL, "needs a URL with a user name"},
};

static void test_parse_urls(void **state)
{
    (void)state;
    for (size_t i = 0; i < PGW_ARRAY_SIZE(url_cases); i++) {
        const struct url_case *c = &url_cases[i];
        struct pgw_proxy *p = NULL;
        char why[PGW_PROXY_WHY_MAX] = "";
        int rc = pgw_proxy_parse(c->url, c->password, &p, why, sizeof(why));

        if (rc != c->rc)
            fail_msg("'%s': rc %d, want %d (%s)", c->url, rc, c->rc, why);
        if (rc < 0) {
            assert_null(p);
            if (!strstr(why, c->why))
                fail_msg("'%s': reason '%s' lacks '%s'", c->url, why, c->why);
            /* the reason never repeats a credential */
            assert_null(strstr(why, "pw"));
            continue;
        }
        assert_string_equal(p->host, c->host);
        assert_string_equal(p->port, c->port);
        assert_string_equal(p->hostport, c->hostport);
        if (c->user)
            assert_string_equal(p->user, c->user);
        else
            assert_null(p->user);
        if (c->pass)
            assert_string_equal(p->password, c->pass);
        else
            assert_null(p->password);
        pgw_proxy_free(p);
    }
}

static void test_connect_request(void **state)
{
    struct pgw_proxy *p = NULL;
    char *req = NULL;

    (void)state;
    assert_int_equal(pgw_proxy_parse("http://proxy:3128", NULL, &p, NULL, 0),
                     0);
    assert_int_equal(
        pgw_proxy_connect_request(p, "api.push.apple.com:443", &req), 0);
    assert_string_equal(req, "CONNECT api.push.apple.com:443 HTTP/1.1\r\n"
                             "Host: api.push.apple.com:443\r\n"
                             "User-Agent: pushgw/" PUSHGW_VERSION "\r\n\r\n");
    pgw_proxy_free_secret(req);
    pgw_proxy_free(p);

    /* RFC 7617's example: Aladdin / open sesame */
    assert_int_equal(pgw_proxy_parse("http://Aladdin:open%20sesame@[::1]:3128",
                                     NULL, &p, NULL, 0),
                     0);
    assert_int_equal(pgw_proxy_connect_request(p, "[::1]:8443", &req), 0);
    assert_string_equal(req,
                        "CONNECT [::1]:8443 HTTP/1.1\r\nHost: [::1]:8443\r\n"
                        "Proxy-Authorization: Basic "
                        "QWxhZGRpbjpvcGVuIHNlc2FtZQ==\r\n"
                        "User-Agent: pushgw/" PUSHGW_VERSION "\r\n\r\n");
    pgw_proxy_free_secret(req);
    pgw_proxy_free(p);

    /* a user without a password: "user:" */
    assert_int_equal(pgw_proxy_parse("http://a@h:1", NULL, &p, NULL, 0), 0);
    assert_int_equal(pgw_proxy_connect_request(p, "h:443", &req), 0);
    assert_non_null(strstr(req, "Proxy-Authorization: Basic YTo=\r\n"));
    pgw_proxy_free_secret(req);
    pgw_proxy_free(p);
}

struct answer_case {
    const char *text;
    int rc; /* > 0: the head's length is strlen(text) minus |tail| */
    size_t tail;
    int status;
    const char *reason;
};

static const struct answer_case answer_cases[] = {
    {"HTTP/1.1 200 Connection established\r\n\r\n", 1, 0, 200,
     "Connection established"},
    {"HTTP/1.0 200\r\n\r\n", 1, 0, 200, ""},
    {"HTTP/1.1 200 OK\r\nVia: x\r\nProxy-Agent: y\r\n\r\n", 1, 0, 200, "OK"},
    {"HTTP/1.1 200 OK\r\n\r\n\x16\x03\x01", 1, 3, 200, "OK"},
    {"HTTP/1.1 407 Proxy Authentication Required\r\n"
     "Proxy-Authenticate: Basic realm=\"x\"\r\n\r\n",
     1, 0, 407, "Proxy Authentication Required"},
    {"HTTP/1.1 502 Bad\x01Gateway\r\n\r\n", 1, 0, 502, "Bad?Gateway"},
    /* incomplete */
    {"", 0, 0, 0, NULL},
    {"HTT", 0, 0, 0, NULL},
    {"HTTP/1.1 200 OK\r\n", 0, 0, 0, NULL},
    {"HTTP/1.1 200 OK\r\nVia: x\r\n\r", 0, 0, 0, NULL},
    /* not HTTP */
    {"SSH-2.0-OpenSSH\r\n\r\n", PGW_ERR_PROTO, 0, 0, NULL},
    {"\x16\x03\x01\x00", PGW_ERR_PROTO, 0, 0, NULL},
    {"HTTP/2 200\r\n\r\n", PGW_ERR_PROTO, 0, 0, NULL},
    {"HTTP/1.1 20 OK\r\n\r\n", PGW_ERR_PROTO, 0, 0, NULL},
    {"HTTP/1.1 2000 OK\r\n\r\n", PGW_ERR_PROTO, 0, 0, NULL},
    {"HTTP/1.1 abc OK\r\n\r\n", PGW_ERR_PROTO, 0, 0, NULL},
};

static void test_parse_answers(void **state)
{
    (void)state;
    for (size_t i = 0; i < PGW_ARRAY_SIZE(answer_cases); i++) {
        const struct answer_case *c = &answer_cases[i];
        size_t len = strlen(c->text);
        char reason[64] = "unset";
        int status = -1;
        int rc = pgw_proxy_parse_answer(c->text, len, &status, reason,
                                        sizeof(reason));

        if (c->rc > 0) {
            if (rc != (int)(len - c->tail))
                fail_msg("case %zu: rc %d, want %zu", i, rc, len - c->tail);
            assert_int_equal(status, c->status);
            assert_string_equal(reason, c->reason);
        } else if (rc != c->rc) {
            fail_msg("case %zu: rc %d, want %d", i, rc, c->rc);
        }
    }
}

#define LONG_REASON "HTTP/1.1 403 Forbidden here\r\n\r\n"

/* A head that never ends is refused at the cap, not read forever. */
static void test_answer_cap(void **state)
{
    size_t n = PGW_PROXY_MAX_ANSWER + 10;
    char *buf = malloc(n);
    char reason[8];
    int status;

    (void)state;
    assert_non_null(buf);
    memcpy(buf, "HTTP/1.1 200 OK\r\n", 17);
    memset(buf + 17, 'x', n - 17);
    assert_int_equal(pgw_proxy_parse_answer(buf, PGW_PROXY_MAX_ANSWER - 1,
                                            &status, reason, sizeof(reason)),
                     0);
    assert_int_equal(pgw_proxy_parse_answer(buf, PGW_PROXY_MAX_ANSWER, &status,
                                            reason, sizeof(reason)),
                     PGW_ERR_TOO_LARGE);
    /* a reason longer than the room is cut */
    assert_int_equal(pgw_proxy_parse_answer(LONG_REASON, strlen(LONG_REASON),
                                            &status, reason, sizeof(reason)),
                     (int)strlen(LONG_REASON));
    assert_string_equal(reason, "Forbidd");
    free(buf);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_urls),
        cmocka_unit_test(test_connect_request),
        cmocka_unit_test(test_parse_answers),
        cmocka_unit_test(test_answer_cap),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
