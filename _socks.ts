// Copyright 2026 the @rfc6455/websocket authors. MIT license.
/**
 * Private: the client side of a SOCKS5 CONNECT (RFC 1928), with
 * username/password authentication (RFC 1929), for `connect()`'s `proxy`
 * option. Host names go to the proxy as names: the client resolves nothing
 * itself, so no DNS query leaks around the proxy.
 *
 * @module
 */

import { HandshakeError } from "./errors.ts";
import { closeQuietly, writeAll } from "./_socket.ts";

// RFC 1928 §6: what a reply code means.
const REPLIES: Record<number, string> = {
  1: "general SOCKS server failure",
  2: "connection not allowed by ruleset",
  3: "network unreachable",
  4: "host unreachable",
  5: "connection refused",
  6: "TTL expired",
  7: "command not supported",
  8: "address type not supported",
};

const encoder = new TextEncoder();

/**
 * Checks the credentials of a SOCKS5 proxy URL before any I/O: RFC 1929
 * allows 1 to 255 bytes of each.
 */
export function checkSocksCredentials(proxy: URL): void {
  const { username, password } = socksCredentials(proxy);
  if (username === "" && password === "") return;
  const user = encoder.encode(username).length;
  const pass = encoder.encode(password).length;
  if (user < 1 || user > 255 || pass < 1 || pass > 255) {
    throw new TypeError(
      "Cannot connect: SOCKS5 proxy user name and password must be 1 to 255 bytes each",
    );
  }
}

function socksCredentials(proxy: URL): { username: string; password: string } {
  return {
    username: decodeURIComponent(proxy.username),
    password: decodeURIComponent(proxy.password),
  };
}

/**
 * Opens a TCP connection to `hostname:port` through the SOCKS5 proxy at
 * `proxy` (`socks5://` or `socks5h://`, default port 1080). Aborting
 * `signal` closes it.
 *
 * @throws {HandshakeError} If the proxy refuses the credentials or the
 * connection, or does not speak SOCKS5.
 */
export async function socksConnect(
  proxy: URL,
  hostname: string,
  port: number,
  signal: AbortSignal,
): Promise<Deno.Conn> {
  const conn = await Deno.connect({
    hostname: proxy.hostname.replace(/^\[|\]$/g, ""),
    port: proxy.port === "" ? 1080 : Number(proxy.port),
    transport: "tcp",
    signal,
  });
  const onAbort = () => closeQuietly(conn);
  signal.addEventListener("abort", onAbort, { once: true });
  const authority = hostname.includes(":")
    ? `[${hostname}]:${port}`
    : `${hostname}:${port}`;
  const fail = (what: string): never => {
    throw new HandshakeError(
      `Cannot connect through SOCKS5 proxy to ${authority}: ${what}`,
    );
  };
  try {
    const { username, password } = socksCredentials(proxy);
    const auth = username !== "" || password !== "";
    // §3: offer "no authentication", and username/password when we have it.
    await writeAll(conn, new Uint8Array(auth ? [5, 2, 0, 2] : [5, 1, 0]));
    const [version, method] = await readExactly(conn, 2, fail);
    if (version !== 5) fail("the proxy does not speak SOCKS5");
    if (method === 0xff) {
      fail(
        auth
          ? "proxy authentication failed (no acceptable method)"
          : "the proxy requires authentication",
      );
    }
    if (method === 2 && auth) {
      // RFC 1929 §2.
      const user = encoder.encode(username);
      const pass = encoder.encode(password);
      await writeAll(
        conn,
        new Uint8Array([1, user.length, ...user, pass.length, ...pass]),
      );
      const [, status] = await readExactly(conn, 2, fail);
      if (status !== 0) fail("proxy authentication failed");
    } else if (method !== 0) {
      fail(`the proxy chose method ${method}, which was not offered`);
    }
    // §4: CONNECT to an IPv4 address, an IPv6 address or a host name.
    let address: number[];
    const ipv4 = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/.exec(hostname);
    const ipv6 = hostname.includes(":") ? ipv6Bytes(hostname) : undefined;
    if (ipv4 !== null) {
      address = [1, ...ipv4.slice(1).map(Number)];
    } else if (ipv6 !== undefined) {
      address = [4, ...ipv6];
    } else {
      const name = encoder.encode(hostname);
      if (name.length > 255) fail("host name is over 255 bytes");
      address = [3, name.length, ...name];
    }
    await writeAll(
      conn,
      new Uint8Array([5, 1, 0, ...address, port >>> 8, port & 0xff]),
    );
    const [replyVersion, reply, , type] = await readExactly(conn, 4, fail);
    if (replyVersion !== 5) fail("the proxy does not speak SOCKS5");
    if (reply !== 0) fail(REPLIES[reply!] ?? `reply code ${reply}`);
    // The address the proxy bound, then its port: not needed.
    const length = type === 1
      ? 4
      : type === 4
      ? 16
      : type === 3
      ? (await readExactly(conn, 1, fail))[0]!
      : fail(`reply has address type ${type}`);
    await readExactly(conn, length + 2, fail);
    return conn;
  } catch (error) {
    closeQuietly(conn);
    throw error;
  } finally {
    signal.removeEventListener("abort", onAbort);
  }
}

async function readExactly(
  conn: Deno.Conn,
  length: number,
  fail: (what: string) => never,
): Promise<Uint8Array> {
  const bytes = new Uint8Array(length);
  let filled = 0;
  while (filled < length) {
    const count = await conn.read(bytes.subarray(filled));
    if (count === null) fail("the proxy closed the connection");
    filled += count!;
  }
  return bytes;
}

/** The 16 bytes of an IPv6 address as URL host names spell it. */
function ipv6Bytes(text: string): number[] | undefined {
  const halves = text.split("::");
  if (halves.length > 2) return undefined;
  const groups = (part: string) => part === "" ? [] : part.split(":");
  const head = groups(halves[0]!);
  const tail = halves.length === 2 ? groups(halves[1]!) : [];
  const zeros = 8 - head.length - tail.length;
  if (halves.length === 2 ? zeros < 1 : zeros !== 0) return undefined;
  const all = [...head, ...Array<string>(zeros).fill("0"), ...tail];
  const bytes: number[] = [];
  for (const group of all) {
    if (!/^[0-9a-f]{1,4}$/i.test(group)) return undefined;
    const value = parseInt(group, 16);
    bytes.push(value >>> 8, value & 0xff);
  }
  return bytes;
}
