#!/bin/sh
# Generates the test PKI into $1 (created): a test CA and loopback server
# certificates for the mock APNs/FCM, a certificate for a wrong host, a
# server certificate from an untrusted CA, APNs ES256 .p8 keys and an FCM
# service account with its RSA key. Idempotent: does nothing when $1/.done
# was written by this version of the script; otherwise starts afresh.
set -eu
out=$1
stamp=$(cksum < "$0")
[ -f "$out/.done" ] && [ "$(cat "$out/.done")" = "$stamp" ] && exit 0
rm -rf "$out"
mkdir -p "$out"
cd "$out"
umask 077

days=3650
ca() { # name subject
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 \
        -nodes -keyout "$1.key" -out "$1.pem" -days $days -subj "$2" \
        -addext basicConstraints=critical,CA:TRUE \
        -addext keyUsage=critical,keyCertSign,cRLSign 2>/dev/null
}
leaf() { # name ca san
    openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
        -keyout "$1.key" -out "$1.csr" -subj "/CN=$1" 2>/dev/null
    printf 'subjectAltName=%s\nextendedKeyUsage=serverAuth\nbasicConstraints=CA:FALSE\n' \
        "$3" > "$1.ext"
    openssl x509 -req -in "$1.csr" -CA "$2.pem" -CAkey "$2.key" \
        -CAcreateserial -out "$1.pem" -days $days -extfile "$1.ext" 2>/dev/null
    rm -f "$1.csr" "$1.ext"
}

ca ca "/CN=pushgw test CA"
ca untrusted-ca "/CN=pushgw untrusted CA"
leaf server ca "DNS:localhost,IP:127.0.0.1,IP:::1"
leaf wronghost ca "DNS:wrong.example"
leaf untrusted untrusted-ca "DNS:localhost,IP:127.0.0.1,IP:::1"

# APNs certificates (TLS client authentication), as Apple issues them:
# the bundle id in the subject's UID. PEM with the key inside, PKCS#12 in
# today's form and in the legacy one (RC2/3DES, what Keychain exports),
# a development one, and one whose key is another's.
client() { # name uid
    openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
        -keyout "$1.key" -out "$1.csr" \
        -subj "/UID=$2/CN=Apple Push Services: $2/OU=TEAM000001" 2>/dev/null
    printf 'extendedKeyUsage=clientAuth\nbasicConstraints=CA:FALSE\n' > "$1.ext"
    openssl x509 -req -in "$1.csr" -CA ca.pem -CAkey ca.key \
        -CAcreateserial -out "$1.crt" -days $days -extfile "$1.ext" 2>/dev/null
    cat "$1.crt" "$1.key" > "$1.pem"
    rm -f "$1.csr" "$1.ext"
}
client apns-cert com.example.app
client apns-dev-cert com.example.app
openssl pkcs12 -export -in apns-cert.crt -inkey apns-cert.key \
    -out apns-cert.p12 -passout pass:p12-secret
openssl pkcs12 -export -legacy -in apns-cert.crt -inkey apns-cert.key \
    -out apns-cert-legacy.p12 -passout pass:p12-secret 2>/dev/null \
    || cp apns-cert.p12 apns-cert-legacy.p12
cat apns-cert.crt apns-dev-cert.key > apns-mismatch.pem
chmod 600 ./*.p12

# APNs token keys (.p8 = PKCS#8 P-256) and their public halves.
for k in KEY0000001 KEY0000002 KEY0000003; do
    openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 \
        -out "AuthKey_$k.p8" 2>/dev/null
    openssl pkey -in "AuthKey_$k.p8" -pubout -out "AuthKey_$k.pub.pem"
done

# An FCM service account JSON with a fresh RSA key.
openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 \
    -out fcm-sa.key 2>/dev/null
openssl pkey -in fcm-sa.key -pubout -out fcm-sa.pub.pem
key=$(awk '{printf "%s\\n", $0}' fcm-sa.key)
cat > fcm-sa.json <<JSON
{
  "type": "service_account",
  "project_id": "pushgw-test",
  "private_key_id": "0123456789abcdef",
  "private_key": "$key",
  "client_email": "pushgw@pushgw-test.iam.gserviceaccount.com",
  "client_id": "100000000000000000001",
  "token_uri": "https://127.0.0.1/token"
}
JSON
chmod 600 ./*.key ./*.p8 fcm-sa.json
chmod 644 ./*.pem
chmod 600 apns-cert.pem apns-dev-cert.pem apns-mismatch.pem
echo "$stamp" > .done
