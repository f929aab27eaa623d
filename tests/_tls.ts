// Copyright 2026 the @rfc6455/websocket authors. MIT license.
// Test helper: a throwaway self-signed certificate for wss tests, made with
// the `openssl` command line tool (CI installs it; nothing is committed).

/** A PEM certificate and its private key. */
export interface TestCertificate {
  /** The certificate, PEM: trust it as a CA to reach the server. */
  cert: string;
  /** The private key, PEM. */
  key: string;
}

/**
 * Whether the `openssl` command runs here. Tests that need a certificate
 * use `ignore: !opensslAvailable`, so a machine without it says they were
 * skipped instead of failing (CI installs it: `apt-get install -y openssl`).
 */
export const opensslAvailable: boolean = (() => {
  try {
    return new Deno.Command("openssl", {
      args: ["version"],
      stdin: "null",
      stdout: "null",
      stderr: "null",
    }).outputSync().success;
  } catch {
    return false;
  }
})();

let cached: Promise<TestCertificate> | undefined;

/**
 * Makes a self-signed P-256 certificate for `127.0.0.1` and `localhost`,
 * valid for one day, once per process.
 *
 * It is a leaf (`CA:FALSE`): rustls, behind `Deno.connectTls` and
 * `Deno.listenTls`, refuses a CA certificate as the server's own
 * (`CaUsedAsEndEntity`), while both rustls and Node accept a self-signed
 * leaf given as the trust anchor.
 *
 * @returns The certificate and key.
 * @throws {Error} If `openssl` is missing or fails.
 */
export function makeCertificate(): Promise<TestCertificate> {
  cached ??= generate();
  return cached;
}

async function generate(): Promise<TestCertificate> {
  const dir = await Deno.makeTempDir({ prefix: "rfc6455_tls_" });
  try {
    const { code, stderr } = await new Deno.Command("openssl", {
      args: [
        "req",
        "-x509",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
        "-days",
        "1",
        "-subj",
        "/CN=localhost",
        "-addext",
        "subjectAltName=IP:127.0.0.1,DNS:localhost",
        "-addext",
        "basicConstraints=critical,CA:FALSE",
        "-addext",
        "extendedKeyUsage=serverAuth",
        "-keyout",
        `${dir}/key.pem`,
        "-out",
        `${dir}/cert.pem`,
      ],
      stdin: "null",
      stdout: "null",
      stderr: "piped",
    }).output();
    if (code !== 0) {
      throw new Error(
        `Cannot make test certificate: openssl exited with code ${code}: ${
          new TextDecoder().decode(stderr)
        }`,
      );
    }
    return {
      cert: await Deno.readTextFile(`${dir}/cert.pem`),
      key: await Deno.readTextFile(`${dir}/key.pem`),
    };
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}
