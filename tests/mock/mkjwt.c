/*
 * mkjwt: prints a signed JWT, for tests and benchmarks.
 *   mkjwt --key AuthKey.p8 --team TEAM --kid KID [--iat N]      (ES256, APNs)
 *   mkjwt --rs256 --key sa.key --iss EMAIL --aud URL [--scope S]
 *         [--iat N] [--exp N]                          (RS256, OAuth assertion)
 */
#include "mockjwt.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

int main(int argc, char **argv)
{
    const char *key = NULL, *team = NULL, *kid = NULL, *iss = NULL, *aud = NULL,
               *scope = "https://www.googleapis.com/auth/firebase.messaging";
    long long iat = (long long)time(NULL), exp = -1;
    int rs256 = 0, rc = 1;
    char hdr[256], claims[1024];
    EVP_PKEY *pk = NULL;
    char *jwt = NULL;

    for (int i = 1; i < argc; i++) {
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(argv[i], "--rs256")) {
            rs256 = 1;
            continue;
        }
        if (!v)
            goto usage;
        if (!strcmp(argv[i], "--key"))
            key = v;
        else if (!strcmp(argv[i], "--team"))
            team = v;
        else if (!strcmp(argv[i], "--kid"))
            kid = v;
        else if (!strcmp(argv[i], "--iss"))
            iss = v;
        else if (!strcmp(argv[i], "--aud"))
            aud = v;
        else if (!strcmp(argv[i], "--scope"))
            scope = v;
        else if (!strcmp(argv[i], "--iat"))
            iat = atoll(v);
        else if (!strcmp(argv[i], "--exp"))
            exp = atoll(v);
        else
            goto usage;
        i++;
    }
    if (!key || (!rs256 && (!team || !kid)) || (rs256 && (!iss || !aud)))
        goto usage;
    pk = mock_pem_load_priv(key);
    if (!pk) {
        fprintf(stderr, "mkjwt: cannot load private key '%s'\n", key);
        return 1;
    }
    if (rs256) {
        snprintf(hdr, sizeof(hdr), "{\"alg\":\"RS256\",\"typ\":\"JWT\"}");
        snprintf(claims, sizeof(claims),
                 "{\"iss\":\"%s\",\"scope\":\"%s\",\"aud\":\"%s\",\"iat\":%lld,"
                 "\"exp\":%lld}",
                 iss, scope, aud, iat, exp < 0 ? iat + 3600 : exp);
    } else {
        snprintf(hdr, sizeof(hdr), "{\"alg\":\"ES256\",\"kid\":\"%s\"}", kid);
        snprintf(claims, sizeof(claims), "{\"iss\":\"%s\",\"iat\":%lld}", team,
                 iat);
    }
    jwt = mock_jwt_sign(pk, !rs256, hdr, claims);
    if (jwt) {
        printf("%s\n", jwt);
        rc = 0;
    } else {
        fprintf(stderr, "mkjwt: signing failed\n");
    }
    free(jwt);
    EVP_PKEY_free(pk);
    return rc;
usage:
    fprintf(stderr, "usage: mkjwt --key K.p8 --team T --kid K [--iat N]\n"
                    "       mkjwt --rs256 --key K --iss E --aud URL [--scope "
                    "S] [--iat N] [--exp N]\n");
    return 2;
}
