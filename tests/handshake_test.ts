// Copyright 2026 the @rfc6455/websocket authors. MIT license.

import assert from "node:assert/strict";
import {
  buildErrorResponse,
  buildUpgradeRequest,
  buildUpgradeResponse,
  createAcceptKey,
  createKey,
  errorResponseFor,
  type ExtensionOffer,
  formatExtensions,
  formatProtocols,
  parseExtensions,
  parseProtocols,
  parseRequestHead,
  parseResponseHead,
  readHead,
  selectProtocol,
  validateUpgradeRequest,
  validateUpgradeResponse,
  WEBSOCKET_GUID,
} from "../handshake.ts";
import { HandshakeError } from "../errors.ts";
import { readResponseHead } from "../_http.ts";
import { ChunkedDecoder, readBody } from "../_body.ts";

const KEY = "dGhlIHNhbXBsZSBub25jZQ==";
const ACCEPT = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=";
const SECRET = "s3cr3t-value-never-in-messages";

function encode(text: string): Uint8Array<ArrayBuffer> {
  return new TextEncoder().encode(text);
}

function decode(bytes: Uint8Array): string {
  return new TextDecoder().decode(bytes);
}

/** A stream of the given chunks, closed after them unless `close` is false. */
function streamOf(
  chunks: Uint8Array[],
  close = true,
): ReadableStream<Uint8Array> {
  return new ReadableStream<Uint8Array>({
    start(controller) {
      for (const chunk of chunks) controller.enqueue(chunk);
      if (close) controller.close();
    },
  });
}

/** A stream that repeats a chunk forever and counts the bytes it produced. */
/** `first`, then every chunk left in `reader`, as one array. */
async function restOf(
  reader: ReadableStreamDefaultReader<Uint8Array>,
  first: Uint8Array = new Uint8Array(0),
): Promise<Uint8Array> {
  const rest = [...first];
  while (true) {
    const { done, value } = await reader.read();
    if (done) return Uint8Array.from(rest);
    rest.push(...value);
  }
}

function endless(
  chunk: Uint8Array,
): { stream: ReadableStream<Uint8Array>; produced: () => number } {
  let produced = 0;
  const stream = new ReadableStream<Uint8Array>({
    pull(controller) {
      produced += chunk.length;
      controller.enqueue(chunk);
    },
  });
  return { stream, produced: () => produced };
}

function requestText(
  lines: string[] = [],
  start = "GET /chat HTTP/1.1",
): string {
  return [start, ...lines].join("\r\n") + "\r\n\r\n";
}

const VALID_REQUEST_LINES = [
  "Host: example.com",
  "Upgrade: websocket",
  "Connection: Upgrade",
  `Sec-WebSocket-Key: ${KEY}`,
  "Sec-WebSocket-Version: 13",
];

function requestWith(
  change: (lines: string[]) => string[],
  start?: string,
): Uint8Array<ArrayBuffer> {
  return encode(requestText(change([...VALID_REQUEST_LINES]), start));
}

function without(name: string): (lines: string[]) => string[] {
  return (lines) =>
    lines.filter((line) => !line.toLowerCase().startsWith(`${name}:`));
}

function replace(
  name: string,
  value: string,
): (lines: string[]) => string[] {
  return (lines) =>
    lines.map((line) =>
      line.toLowerCase().startsWith(`${name.toLowerCase()}:`)
        ? `${line.slice(0, line.indexOf(":"))}: ${value}`
        : line
    );
}

function responseHead(
  lines: string[],
  start = "HTTP/1.1 101 Switching Protocols",
) {
  return parseResponseHead(encode([start, ...lines].join("\r\n") + "\r\n\r\n"));
}

const VALID_RESPONSE_LINES = [
  "Upgrade: websocket",
  "Connection: Upgrade",
  `Sec-WebSocket-Accept: ${ACCEPT}`,
];

function handshakeError(
  expected: {
    status?: number | undefined;
    header?: string | undefined;
    message?: RegExp;
  },
): (error: unknown) => boolean {
  return (error) => {
    assert.ok(error instanceof HandshakeError, String(error));
    if ("status" in expected) assert.equal(error.status, expected.status);
    if ("header" in expected) assert.equal(error.header, expected.header);
    if (expected.message) assert.match(error.message, expected.message);
    assertMessageStyle(error.message);
    return true;
  };
}

function assertMessageStyle(message: string): void {
  assert.match(message, /^Cannot [a-z]/);
  assert.doesNotMatch(message, /\.$/);
  assert.doesNotMatch(message, /n't|'s /);
  assert.ok(!message.includes(SECRET), `message leaks a value: ${message}`);
  assert.ok(!message.includes(KEY), `message leaks the key: ${message}`);
}

Deno.test("handshake.ts, _http.ts and _body.ts use only the Web platform and each other", async () => {
  const expected: Record<string, string[]> = {
    "handshake.ts": ["./errors.ts", "./_http.ts", "./_http.ts", "./errors.ts"],
    "_http.ts": ["./errors.ts"],
    "_body.ts": ["./_http.ts"],
  };
  for (const [file, imported] of Object.entries(expected)) {
    const source = await Deno.readTextFile(
      new URL(`../${file}`, import.meta.url),
    );
    assert.ok(!source.includes("Deno."), `${file} must not use Deno.*`);
    assert.match(source, /This module is browser compatible/);
    const imports = /^(?:import|export)\b[^;]*?\bfrom "([^"]+)"/gm;
    const specifiers = [...source.matchAll(imports)].map((match) => match[1]);
    assert.deepEqual(specifiers, imported, file);
  }
});

Deno.test("RFC 6455 §4 keys", async (t) => {
  await t.step("createKey() returns 16 random bytes in base64", () => {
    const keys = new Set<string>();
    for (let i = 0; i < 100; i++) {
      const key = createKey();
      assert.match(key, /^[A-Za-z0-9+/]{22}==$/);
      assert.equal(Uint8Array.fromBase64(key).length, 16);
      keys.add(key);
    }
    assert.equal(keys.size, 100);
  });

  await t.step("createAcceptKey() matches the §1.3 vector", async () => {
    assert.equal(WEBSOCKET_GUID, "258EAFA5-E914-47DA-95CA-C5AB0DC85B11");
    assert.equal(await createAcceptKey(KEY), ACCEPT);
  });
});

Deno.test("RFC 6455 §4.1 buildUpgradeRequest()", async (t) => {
  await t.step("builds the request byte for byte", () => {
    const bytes = buildUpgradeRequest({
      url: new URL("wss://example.com/chat?room=1#frag"),
      key: KEY,
      protocols: ["chat.v2", "chat.v1"],
      extensions: [
        {
          name: "permessage-deflate",
          params: [["client_max_window_bits", true]],
        },
        { name: "permessage-deflate", params: [] },
      ],
    });
    assert.equal(
      decode(bytes),
      "GET /chat?room=1 HTTP/1.1\r\n" +
        "Host: example.com\r\n" +
        "Upgrade: websocket\r\n" +
        "Connection: Upgrade\r\n" +
        `Sec-WebSocket-Key: ${KEY}\r\n` +
        "Sec-WebSocket-Version: 13\r\n" +
        "Sec-WebSocket-Protocol: chat.v2, chat.v1\r\n" +
        "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits, permessage-deflate\r\n" +
        "\r\n",
    );
  });

  await t.step(
    "keeps the order and case of extra headers, after its own",
    () => {
      const bytes = buildUpgradeRequest({
        url: new URL("ws://example.com/"),
        key: KEY,
        headers: [
          ["user-agent", "crawler/1.0"],
          ["Origin", "https://example.com"],
          ["COOKIE", "a=1; b=2"],
          ["Authorization", `  Bearer ${SECRET}\t`],
        ],
      });
      const lines = decode(bytes).split("\r\n");
      assert.deepEqual(lines.slice(6), [
        "user-agent: crawler/1.0",
        "Origin: https://example.com",
        "COOKIE: a=1; b=2",
        `Authorization: Bearer ${SECRET}`,
        "",
        "",
      ]);
    },
  );

  await t.step("takes Host from the URL, without a default port", () => {
    const hostOf = (url: string) =>
      parseRequestHead(buildUpgradeRequest({ url: new URL(url), key: KEY }))
        .headers.get("host");
    assert.equal(hostOf("wss://example.com:443/"), "example.com");
    assert.equal(hostOf("ws://example.com:80/"), "example.com");
    assert.equal(hostOf("ws://example.com:8080/"), "example.com:8080");
    assert.equal(hostOf("wss://[::1]:9000/"), "[::1]:9000");
    assert.equal(hostOf("https://example.com"), "example.com");
    assert.equal(hostOf("http://example.com:443"), "example.com:443");
  });

  await t.step("lets a Host header override the URL's, in its place", () => {
    const head = parseRequestHead(buildUpgradeRequest({
      url: new URL("ws://127.0.0.1:8080/x"),
      key: KEY,
      headers: [["Origin", "http://a"], ["hOsT", "virtual.example"]],
    }));
    assert.equal(head.target, "/x");
    assert.deepEqual(head.rawHeaders[0], ["hOsT", "virtual.example"]);
    assert.deepEqual(head.rawHeaders.at(-1), ["Origin", "http://a"]);
    assert.equal(head.rawHeaders.length, 6);
    assert.throws(
      () =>
        buildUpgradeRequest({
          url: new URL("ws://a/"),
          key: KEY,
          headers: [["Host", "b"], ["host", "c"]],
        }),
      TypeError,
    );
  });

  await t.step("refuses the headers the handshake owns, naming them", () => {
    for (
      const name of [
        "Upgrade",
        "connection",
        "Sec-WebSocket-Key",
        "SEC-WEBSOCKET-VERSION",
        "Sec-WebSocket-Protocol",
        "Sec-WebSocket-Extensions",
        "Content-Length",
        "Transfer-Encoding",
      ]
    ) {
      assert.throws(
        () =>
          buildUpgradeRequest({
            url: new URL("ws://a/"),
            key: KEY,
            headers: [[name, SECRET]],
          }),
        (error: unknown) => {
          assert.ok(error instanceof TypeError);
          assert.ok(error.message.includes(`"${name}"`), error.message);
          assertMessageStyle(error.message);
          return true;
        },
      );
    }
  });

  await t.step("refuses header injection without echoing the value", () => {
    const cases: [string, string][] = [
      ["Cookie", `${SECRET}\r\nX-Evil: 1`],
      ["Cookie", `${SECRET}\nX-Evil: 1`],
      ["Cookie", `${SECRET}\r`],
      ["Cookie", `${SECRET}\0`],
      ["Cookie", `${SECRET}\x7f`],
      ["Cookie", `${SECRET}\u2603`],
      ["X-Evil: 1\r\nCookie", SECRET],
      ["Bad Name", SECRET],
      ["", SECRET],
      ["Bad:Name", SECRET],
    ];
    for (const header of cases) {
      assert.throws(
        () =>
          buildUpgradeRequest({
            url: new URL("ws://a/"),
            key: KEY,
            headers: [header],
          }),
        (error: unknown) => {
          assert.ok(error instanceof TypeError);
          assertMessageStyle(error.message);
          assert.ok(
            !error.message.includes("\r") && !error.message.includes("\n"),
          );
          return true;
        },
      );
    }
  });

  await t.step(
    "refuses a bad URL scheme, key, subprotocol or extension",
    () => {
      const url = new URL("ws://a/");
      for (
        const options of [
          { url: new URL("ftp://a/"), key: KEY },
          { url, key: "short" },
          { url, key: "dGhlIHNhbXBsZSBub25jZR==" },
          { url, key: `${KEY}\r\nX: 1` },
          { url, key: KEY, protocols: ["a b"] },
          { url, key: KEY, protocols: ["a", "a"] },
          { url, key: KEY, extensions: [{ name: "x y", params: [] }] },
        ]
      ) {
        assert.throws(() => buildUpgradeRequest(options), TypeError);
      }
    },
  );
});

Deno.test("RFC 6455 §4.1 validateUpgradeResponse()", async (t) => {
  await t.step("accepts a valid answer", async () => {
    const result = await validateUpgradeResponse(
      responseHead([
        "upgrade: WebSocket",
        "connection: keep-alive, upgrade",
        `sec-websocket-accept: ${ACCEPT}`,
        "Sec-WebSocket-Protocol: chat.v1",
        "Sec-WebSocket-Extensions: permessage-deflate; server_no_context_takeover",
      ]),
      {
        key: KEY,
        protocols: ["chat.v2", "chat.v1"],
        extensions: [{ name: "permessage-deflate", params: [] }],
      },
    );
    assert.deepEqual(result, {
      protocol: "chat.v1",
      extensions: [{
        name: "permessage-deflate",
        params: [["server_no_context_takeover", true]],
      }],
    });
    assert.deepEqual(
      await validateUpgradeResponse(responseHead(VALID_RESPONSE_LINES), {
        key: KEY,
        protocols: ["chat.v1"],
      }),
      { protocol: "", extensions: [] },
    );
  });

  await t.step(
    "a status other than 101 carries status, headers and body",
    async () => {
      const response = responseHead(
        ["Content-Type: text/plain", "Content-Length: 7"],
        "HTTP/1.1 403 Forbidden",
      );
      const body = encode("go away");
      await assert.rejects(
        validateUpgradeResponse(response, { key: KEY, body }),
        (error: unknown) => {
          assert.ok(error instanceof HandshakeError);
          assert.equal(
            error.message,
            "Cannot open WebSocket: server answered 403 Forbidden",
          );
          assert.equal(error.status, 403);
          assert.equal(error.headers?.get("content-type"), "text/plain");
          assert.equal(decode(error.body ?? new Uint8Array()), "go away");
          assert.equal(error.header, undefined);
          return true;
        },
      );
      await assert.rejects(
        validateUpgradeResponse(responseHead([], "HTTP/1.1 200"), { key: KEY }),
        { status: 200, message: "Cannot open WebSocket: server answered 200" },
      );
    },
  );

  const failures: [string, string[], string | undefined, RegExp][] = [
    [
      "a missing Upgrade",
      without("upgrade")(VALID_RESPONSE_LINES),
      "upgrade",
      /missing Upgrade/,
    ],
    [
      "a wrong Upgrade",
      replace("upgrade", "h2c")(VALID_RESPONSE_LINES),
      "upgrade",
      /Upgrade/,
    ],
    [
      "two Upgrade values",
      [...VALID_RESPONSE_LINES, "Upgrade: websocket"],
      "upgrade",
      /Upgrade/,
    ],
    [
      "a missing Connection",
      without("connection")(VALID_RESPONSE_LINES),
      "connection",
      /Connection/,
    ],
    [
      "a Connection without upgrade",
      replace("connection", "keep-alive, upgrades")(VALID_RESPONSE_LINES),
      "connection",
      /Connection/,
    ],
    [
      "a missing Sec-WebSocket-Accept",
      without("sec-websocket-accept")(VALID_RESPONSE_LINES),
      "sec-websocket-accept",
      /Sec-WebSocket-Accept/,
    ],
    [
      "a wrong Sec-WebSocket-Accept",
      replace("sec-websocket-accept", "x3JJHMbDL1EzLkh9GBhXDw==")(
        VALID_RESPONSE_LINES,
      ),
      "sec-websocket-accept",
      /does not match/,
    ],
    [
      "a subprotocol that was not offered",
      [...VALID_RESPONSE_LINES, "Sec-WebSocket-Protocol: mqtt"],
      "sec-websocket-protocol",
      /not offered/,
    ],
    [
      "an extension that was not offered",
      [
        ...VALID_RESPONSE_LINES,
        "Sec-WebSocket-Extensions: x-webkit-deflate-frame",
      ],
      "sec-websocket-extensions",
      /not offered/,
    ],
    [
      "a malformed Sec-WebSocket-Extensions",
      [
        ...VALID_RESPONSE_LINES,
        "Sec-WebSocket-Extensions: permessage-deflate;;",
      ],
      "sec-websocket-extensions",
      /malformed/,
    ],
    [
      "an empty Sec-WebSocket-Extensions (§9.1: 1#extension)",
      [...VALID_RESPONSE_LINES, "Sec-WebSocket-Extensions: "],
      "sec-websocket-extensions",
      /lists no extension$/,
    ],
    [
      "two Sec-WebSocket-Extensions lines of commas only",
      [
        ...VALID_RESPONSE_LINES,
        "Sec-WebSocket-Extensions: , ,",
        "Sec-WebSocket-Extensions: ,",
      ],
      "sec-websocket-extensions",
      /lists no extension$/,
    ],
  ];
  for (const [what, lines, header, message] of failures) {
    await t.step(`${what} fails, naming the header`, async () => {
      await assert.rejects(
        validateUpgradeResponse(responseHead(lines), {
          key: KEY,
          protocols: ["chat.v1"],
          extensions: [{ name: "permessage-deflate", params: [] }],
          body: encode("x"),
        }),
        (error: unknown) => {
          handshakeError({ status: 101, header, message })(error);
          assert.ok(error instanceof HandshakeError);
          assert.ok(error.headers instanceof Headers);
          assert.equal(decode(error.body ?? new Uint8Array()), "x");
          return true;
        },
      );
    });
  }

  await t.step("a subprotocol when none was offered fails", async () => {
    await assert.rejects(
      validateUpgradeResponse(
        responseHead([
          ...VALID_RESPONSE_LINES,
          "Sec-WebSocket-Protocol: chat.v1",
        ]),
        { key: KEY },
      ),
      handshakeError({
        header: "sec-websocket-protocol",
        message: /none was offered/,
      }),
    );
  });

  await t.step(
    "repeated Sec-WebSocket-Extensions lines are one list (erratum 3433)",
    async () => {
      const result = await validateUpgradeResponse(
        responseHead([
          ...VALID_RESPONSE_LINES,
          "Sec-WebSocket-Extensions: ",
          "Sec-WebSocket-Extensions: x-a, x-b; p",
          "Sec-WebSocket-Extensions: x-c",
        ]),
        {
          key: KEY,
          extensions: ["x-a", "x-b", "x-c"].map((name) => ({
            name,
            params: [],
          })),
        },
      );
      assert.deepEqual(result.extensions, [
        { name: "x-a", params: [] },
        { name: "x-b", params: [["p", true]] },
        { name: "x-c", params: [] },
      ]);
    },
  );

  await t.step(
    "an empty Sec-WebSocket-Extensions when none was offered fails",
    async () => {
      await assert.rejects(
        validateUpgradeResponse(
          responseHead([...VALID_RESPONSE_LINES, "Sec-WebSocket-Extensions:"]),
          { key: KEY },
        ),
        handshakeError({
          header: "sec-websocket-extensions",
          message: /lists no extension$/,
        }),
      );
    },
  );

  await t.step("an extension when none was offered fails", async () => {
    await assert.rejects(
      validateUpgradeResponse(
        responseHead([
          ...VALID_RESPONSE_LINES,
          "Sec-WebSocket-Extensions: permessage-deflate",
        ]),
        { key: KEY },
      ),
      handshakeError({ header: "sec-websocket-extensions" }),
    );
  });

  await t.step("an HTTP/1.0 answer fails", async () => {
    await assert.rejects(
      validateUpgradeResponse(
        responseHead(VALID_RESPONSE_LINES, "HTTP/1.0 101 Switching Protocols"),
        { key: KEY },
      ),
      handshakeError({ status: 101, message: /HTTP\/1\.1/ }),
    );
  });
});

Deno.test("RFC 6455 §4.2.1 validateUpgradeRequest()", async (t) => {
  await t.step("accepts a valid request and returns its offers", () => {
    const info = validateUpgradeRequest(
      parseRequestHead(requestWith((lines) => [
        ...replace("connection", "keep-alive, Upgrade")(lines),
        "Sec-WebSocket-Protocol: chat.v2, chat.v1",
        "Sec-WebSocket-Protocol: chat.v0",
        "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits",
        "Sec-WebSocket-Extensions: x-foo",
      ])),
    );
    assert.deepEqual(info, {
      key: KEY,
      version: "13",
      protocols: ["chat.v2", "chat.v1", "chat.v0"],
      extensions: [
        {
          name: "permessage-deflate",
          params: [["client_max_window_bits", true]],
        },
        { name: "x-foo", params: [] },
      ],
    });
    assert.deepEqual(
      validateUpgradeRequest(
        parseRequestHead(requestWith((lines) => lines, "GET / HTTP/1.9")),
      )
        .protocols,
      [],
    );
    validateUpgradeRequest(
      parseRequestHead(requestWith(replace("upgrade", "h2c, WebSocket"))),
    );
  });

  const failures: [
    string,
    Uint8Array<ArrayBuffer>,
    number,
    string | undefined,
  ][] = [
    [
      "a POST",
      requestWith((lines) => lines, "POST / HTTP/1.1"),
      405,
      undefined,
    ],
    [
      "an HTTP/1.0 request",
      requestWith((lines) => lines, "GET / HTTP/1.0"),
      400,
      undefined,
    ],
    [
      "an HTTP/2.0 request",
      requestWith((lines) => lines, "GET / HTTP/2.0"),
      505,
      undefined,
    ],
    ["a missing Host", requestWith(without("host")), 400, "host"],
    [
      "two Host headers",
      requestWith((l) => [...l, "Host: other"]),
      400,
      "host",
    ],
    [
      "a Host with a path and query",
      requestWith(replace("host", "a/admin?")),
      400,
      "host",
    ],
    [
      "a Host with userinfo",
      requestWith(replace("host", "user:pw@a")),
      400,
      "host",
    ],
    ["an empty Host", requestWith(replace("host", "")), 400, "host"],
    ["a plain GET", encode(requestText(["Host: a"])), 426, "upgrade"],
    ["a missing Upgrade", requestWith(without("upgrade")), 426, "upgrade"],
    [
      "an Upgrade without websocket",
      requestWith(replace("upgrade", "h2c")),
      400,
      "upgrade",
    ],
    [
      "a missing Connection",
      requestWith(without("connection")),
      400,
      "connection",
    ],
    [
      "a Connection without upgrade",
      requestWith(replace("connection", "close")),
      400,
      "connection",
    ],
    [
      "a missing Sec-WebSocket-Version",
      requestWith(without("sec-websocket-version")),
      426,
      "sec-websocket-version",
    ],
    [
      "Sec-WebSocket-Version 8",
      requestWith(replace("sec-websocket-version", "8")),
      426,
      "sec-websocket-version",
    ],
    [
      "two Sec-WebSocket-Version headers",
      requestWith((l) => [...l, "Sec-WebSocket-Version: 13"]),
      426,
      "sec-websocket-version",
    ],
    [
      "a missing Sec-WebSocket-Key",
      requestWith(without("sec-websocket-key")),
      400,
      "sec-websocket-key",
    ],
    [
      "a duplicate Sec-WebSocket-Key",
      requestWith((l) => [...l, `Sec-WebSocket-Key: ${KEY}`]),
      400,
      "sec-websocket-key",
    ],
    [
      "a Sec-WebSocket-Key of 15 bytes",
      requestWith(replace("sec-websocket-key", new Uint8Array(15).toBase64())),
      400,
      "sec-websocket-key",
    ],
    [
      "a Sec-WebSocket-Key of 17 bytes",
      requestWith(replace("sec-websocket-key", new Uint8Array(17).toBase64())),
      400,
      "sec-websocket-key",
    ],
    [
      "a Sec-WebSocket-Key that is not base64",
      requestWith(replace("sec-websocket-key", "!!!!!!!!!!!!!!!!!!!!!!==")),
      400,
      "sec-websocket-key",
    ],
    [
      "a malformed Sec-WebSocket-Protocol",
      requestWith((l) => [...l, "Sec-WebSocket-Protocol: chat v2"]),
      400,
      "sec-websocket-protocol",
    ],
    [
      "a repeated subprotocol",
      requestWith((l) => [...l, "Sec-WebSocket-Protocol: a, a"]),
      400,
      "sec-websocket-protocol",
    ],
    [
      "a malformed Sec-WebSocket-Extensions",
      requestWith((l) => [...l, 'Sec-WebSocket-Extensions: a; b="']),
      400,
      "sec-websocket-extensions",
    ],
  ];
  for (const [what, head, status, header] of failures) {
    await t.step(`${what} fails with status ${status}`, () => {
      assert.throws(
        () => validateUpgradeRequest(parseRequestHead(head)),
        (error: unknown) => {
          handshakeError({ status, header })(error);
          assert.ok(error instanceof HandshakeError);
          assert.ok(error.headers instanceof Headers);
          return true;
        },
      );
    });
  }

  await t.step("the answer to a 426 carries Sec-WebSocket-Version: 13", () => {
    try {
      validateUpgradeRequest(
        parseRequestHead(requestWith(replace("sec-websocket-version", "8"))),
      );
      assert.fail("expected a HandshakeError");
    } catch (error) {
      assert.ok(error instanceof HandshakeError);
      const answer = errorResponseFor(error);
      const end = decode(answer).indexOf("\r\n\r\n") + 4;
      const response = parseResponseHead(answer.subarray(0, end));
      assert.equal(response.status, 426);
      assert.equal(response.statusText, "Upgrade Required");
      assert.equal(response.headers.get("sec-websocket-version"), "13");
      assert.equal(response.headers.get("upgrade"), "websocket");
      // RFC 9110 §7.8: a sender of Upgrade lists it in Connection.
      assert.equal(response.headers.get("connection"), "upgrade, close");
      assert.equal(decode(answer.subarray(end)), error.message);
    }
  });

  await t.step("the answer to a 405 carries Allow: GET", () => {
    try {
      validateUpgradeRequest(
        parseRequestHead(requestWith((l) => l, "PUT / HTTP/1.1")),
      );
      assert.fail("expected a HandshakeError");
    } catch (error) {
      assert.ok(error instanceof HandshakeError);
      const text = decode(errorResponseFor(error));
      assert.match(text, /^HTTP\/1\.1 405 Method Not Allowed\r\n/);
      assert.match(text, /\r\nAllow: GET\r\n/);
    }
  });
});

Deno.test("RFC 6455 §4.2.2 buildUpgradeResponse() and error answers", async (t) => {
  await t.step(
    "buildUpgradeResponse() builds the answer byte for byte",
    async () => {
      const bytes = await buildUpgradeResponse({
        key: KEY,
        protocol: "chat.v1",
        extensions: [{
          name: "permessage-deflate",
          params: [["server_max_window_bits", "10"]],
        }],
        headers: [["Set-Cookie", "a=1"], ["x-server", "test"]],
      });
      assert.equal(
        decode(bytes),
        "HTTP/1.1 101 Switching Protocols\r\n" +
          "Upgrade: websocket\r\n" +
          "Connection: Upgrade\r\n" +
          `Sec-WebSocket-Accept: ${ACCEPT}\r\n` +
          "Sec-WebSocket-Protocol: chat.v1\r\n" +
          "Sec-WebSocket-Extensions: permessage-deflate; server_max_window_bits=10\r\n" +
          "Set-Cookie: a=1\r\n" +
          "x-server: test\r\n" +
          "\r\n",
      );
      const plain = decode(
        await buildUpgradeResponse({ key: KEY, protocol: "" }),
      );
      assert.ok(!plain.includes("Sec-WebSocket-Protocol"));
    },
  );

  await t.step(
    "buildUpgradeResponse() round-trips through the client's checks",
    async () => {
      const key = createKey();
      const bytes = await buildUpgradeResponse({ key, protocol: "b" });
      const result = await validateUpgradeResponse(parseResponseHead(bytes), {
        key,
        protocols: ["a", "b"],
      });
      assert.equal(result.protocol, "b");
    },
  );

  await t.step("buildUpgradeResponse() refuses bad input", async () => {
    for (
      const init of [
        { key: "nope" },
        { key: KEY, protocol: "a b" },
        {
          key: KEY,
          headers: [["Sec-WebSocket-Accept", "x"]] as [string, string][],
        },
        { key: KEY, headers: [["Connection", "close"]] as [string, string][] },
        { key: KEY, headers: [["X", `${SECRET}\r\n`]] as [string, string][] },
        {
          key: KEY,
          extensions: [{
            name: "a",
            params: [["b", "c d"]],
          }] as ExtensionOffer[],
        },
      ]
    ) {
      await assert.rejects(buildUpgradeResponse(init), TypeError);
    }
  });

  await t.step("buildErrorResponse() builds a closing text answer", () => {
    assert.equal(
      decode(
        buildErrorResponse(400, "Cannot upgrade: €", [["X-Request-Id", "7"]]),
      ),
      "HTTP/1.1 400 Bad Request\r\n" +
        "Content-Type: text/plain; charset=utf-8\r\n" +
        "Content-Length: 19\r\n" +
        "Connection: close\r\n" +
        "X-Request-Id: 7\r\n" +
        "\r\n" +
        "Cannot upgrade: €",
    );
    assert.equal(
      decode(buildErrorResponse(426)),
      "HTTP/1.1 426 Upgrade Required\r\n" +
        "Content-Type: text/plain; charset=utf-8\r\n" +
        "Content-Length: 16\r\n" +
        "Connection: upgrade, close\r\n" +
        "Sec-WebSocket-Version: 13\r\n" +
        "Upgrade: websocket\r\n" +
        "\r\n" +
        "Upgrade Required",
    );
    const custom = decode(
      buildErrorResponse(403, "", [["content-type", "text/html"]]),
    );
    assert.ok(!custom.includes("text/plain"));
    assert.match(custom, /\r\ncontent-type: text\/html\r\n/);
    assert.match(custom, /\r\nContent-Length: 0\r\n/);
    assert.match(decode(buildErrorResponse(499)), /^HTTP\/1\.1 499 \r\n/);
  });

  await t.step("buildErrorResponse() refuses bad input", () => {
    for (const status of [200, 101, 399, 600, 400.5, NaN]) {
      assert.throws(() => buildErrorResponse(status), RangeError);
    }
    for (const name of ["Content-Length", "connection", "Transfer-Encoding"]) {
      assert.throws(
        () => buildErrorResponse(400, "", [[name, "1"]]),
        TypeError,
      );
    }
    assert.throws(
      () => buildErrorResponse(400, "", [["X", "a\nb"]]),
      TypeError,
    );
  });

  await t.step(
    "errorResponseFor() answers 400 when the error has no usable status",
    () => {
      for (
        const error of [
          new HandshakeError("Cannot x: y"),
          new HandshakeError("Cannot x: y", { status: 101 }),
        ]
      ) {
        const text = decode(errorResponseFor(error));
        assert.match(text, /^HTTP\/1\.1 400 Bad Request\r\n/);
        assert.ok(text.endsWith("\r\n\r\nCannot x: y"));
      }
      assert.match(
        decode(
          errorResponseFor(
            new HandshakeError("Cannot read HTTP head: too big", {
              status: 431,
            }),
          ),
        ),
        /^HTTP\/1\.1 431 Request Header Fields Too Large\r\n/,
      );
    },
  );
});

Deno.test("RFC 6455 §9.1 header grammar", async (t) => {
  await t.step(
    "parseExtensions() reads tokens, quoted strings and valueless params",
    () => {
      assert.deepEqual(
        parseExtensions(
          'permessage-deflate ;client_max_window_bits; server_max_window_bits = "1\\0" ,\tx-foo;a=b;a=b;c, , permessage-deflate',
        ),
        [
          {
            name: "permessage-deflate",
            params: [["client_max_window_bits", true], [
              "server_max_window_bits",
              "10",
            ]],
          },
          { name: "x-foo", params: [["a", "b"], ["a", "b"], ["c", true]] },
          { name: "permessage-deflate", params: [] },
        ],
      );
      assert.deepEqual(parseExtensions(""), []);
      assert.deepEqual(parseExtensions(" , "), []);
    },
  );

  await t.step(
    "parseExtensions() refuses invalid values with a SyntaxError",
    () => {
      for (
        const value of [
          "a b",
          "a;",
          "a;;b",
          "a; =1",
          "a; b=",
          "a; b=c d",
          'a; b="c',
          'a; b="c d"',
          'a; b=""',
          'a; b="c\\',
          'a; b="c\x01"',
          "a; b=c=d",
          ";a",
          "a/1",
          "a; b=c;",
          `a; b="${SECRET}`,
        ]
      ) {
        assert.throws(
          () => parseExtensions(value),
          (error: unknown) => {
            assert.ok(error instanceof SyntaxError, `${value}: ${error}`);
            assertMessageStyle(error.message);
            assert.match(
              error.message,
              /^Cannot parse Sec-WebSocket-Extensions: .* at position \d+$/,
            );
            return true;
          },
          value,
        );
      }
    },
  );

  await t.step("formatExtensions() round-trips parseExtensions()", () => {
    const values = [
      "permessage-deflate; client_max_window_bits, permessage-deflate",
      "a; b=1; b=1; c, d",
      "x-foo",
    ];
    for (const value of values) {
      assert.equal(formatExtensions(parseExtensions(value)), value);
    }
    const offers: ExtensionOffer[] = [
      {
        name: "permessage-deflate",
        params: [["server_max_window_bits", "10"], [
          "server_no_context_takeover",
          true,
        ]],
      },
    ];
    assert.deepEqual(parseExtensions(formatExtensions(offers)), offers);
    assert.equal(formatExtensions([]), "");
    assert.equal(formatExtensions(parseExtensions('a; b="c"')), "a; b=c");
  });

  await t.step(
    "formatExtensions() refuses names and values that are not tokens",
    () => {
      for (
        const offers of [
          [{ name: "", params: [] }],
          [{ name: "a,b", params: [] }],
          [{ name: "a", params: [["b c", true]] }],
          [{ name: "a", params: [["b", ""]] }],
          [{ name: "a", params: [["b", `${SECRET}\r\n`]] }],
        ] as ExtensionOffer[][]
      ) {
        assert.throws(
          () => formatExtensions(offers),
          (error: unknown) => {
            assert.ok(error instanceof TypeError);
            assertMessageStyle(error.message);
            return true;
          },
        );
      }
    },
  );

  await t.step(
    "parseProtocols() and formatProtocols() round-trip tokens",
    () => {
      assert.deepEqual(parseProtocols("chat.v2, chat.v1 ,\tmqtt"), [
        "chat.v2",
        "chat.v1",
        "mqtt",
      ]);
      assert.deepEqual(parseProtocols(""), []);
      assert.deepEqual(parseProtocols("a,,b"), ["a", "b"]);
      assert.equal(formatProtocols(["chat.v2", "chat.v1"]), "chat.v2, chat.v1");
      assert.equal(formatProtocols([]), "");
      assert.deepEqual(parseProtocols(formatProtocols(["a", "B", "a.b"])), [
        "a",
        "B",
        "a.b",
      ]);
    },
  );

  await t.step("parseProtocols() refuses non-tokens and duplicates", () => {
    for (const value of ["a b", "a;b", '"a"', "a, a", `${SECRET} x`]) {
      assert.throws(
        () => parseProtocols(value),
        (error: unknown) => {
          assert.ok(error instanceof SyntaxError);
          assertMessageStyle(error.message);
          return true;
        },
      );
    }
  });

  await t.step("formatProtocols() refuses non-tokens and duplicates", () => {
    for (const protocols of [[""], ["a b"], ["a", "a"], ["a\r\nb"]]) {
      assert.throws(() => formatProtocols(protocols), TypeError);
    }
  });

  await t.step(
    "selectProtocol() picks the client's first supported offer",
    () => {
      assert.equal(selectProtocol(["b", "a"], ["a", "b"]), "b");
      assert.equal(selectProtocol(["x", "a"], ["a", "b"]), "a");
      assert.equal(selectProtocol(["A"], ["a"]), undefined);
      assert.equal(selectProtocol([], ["a"]), undefined);
    },
  );
});

Deno.test("RFC 9112 parseRequestHead() and parseResponseHead() are strict", async (t) => {
  await t.step(
    "parseRequestHead() keeps order and case and trims values",
    () => {
      const request = parseRequestHead(encode(requestText([
        "Host: example.com",
        "X-Multi:  a \t",
        "x-multi:b",
        "Empty:",
      ], "GET /a%20b?c=d HTTP/1.1")));
      assert.equal(request.method, "GET");
      assert.equal(request.target, "/a%20b?c=d");
      assert.equal(request.version, "HTTP/1.1");
      assert.deepEqual(request.rawHeaders, [
        ["Host", "example.com"],
        ["X-Multi", "a"],
        ["x-multi", "b"],
        ["Empty", ""],
      ]);
      assert.equal(request.headers.get("x-multi"), "a, b");
      const latin1 = Uint8Array.from([
        ...encode("GET / HTTP/1.1\r\nA: x"),
        0xe9,
        ...encode("\r\n\r\n"),
      ]);
      assert.equal(parseRequestHead(latin1).headers.get("a"), "x\xe9");
    },
  );

  await t.step("parseResponseHead() reads status lines", () => {
    const response = parseResponseHead(
      encode("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n"),
    );
    assert.equal(response.status, 101);
    assert.equal(response.statusText, "Switching Protocols");
    assert.equal(response.version, "HTTP/1.1");
    assert.deepEqual(response.rawHeaders, [["Upgrade", "websocket"]]);
    assert.equal(
      parseResponseHead(encode("HTTP/1.1 404 \r\n\r\n")).statusText,
      "",
    );
    assert.equal(
      parseResponseHead(encode("HTTP/1.1 404\r\n\r\n")).statusText,
      "",
    );
  });

  const requestFailures: [string, string, number, RegExp][] = [
    ["a bare LF", "GET / HTTP/1.1\r\nHost: a\nX: y\r\n\r\n", 400, /bare LF/],
    ["a bare CR", "GET / HTTP/1.1\r\nHost: a\rX: y\r\n\r\n", 400, /bare CR/],
    [
      "obs-fold",
      `GET / HTTP/1.1\r\nAuthorization: Bearer\r\n ${SECRET}\r\n\r\n`,
      400,
      /obsolete line folding/,
    ],
    [
      "obs-fold with a tab",
      "GET / HTTP/1.1\r\nA: b\r\n\tc\r\n\r\n",
      400,
      /obsolete line folding/,
    ],
    [
      "a missing colon",
      `GET / HTTP/1.1\r\nCookie ${SECRET}\r\n\r\n`,
      400,
      /no colon/,
    ],
    [
      "whitespace before the colon",
      "GET / HTTP/1.1\r\nHost : a\r\n\r\n",
      400,
      /whitespace before the colon/,
    ],
    [
      "a name that is not a token",
      'GET / HTTP/1.1\r\nA"b: c\r\n\r\n',
      400,
      /not a token/,
    ],
    ["an empty name", "GET / HTTP/1.1\r\n: c\r\n\r\n", 400, /not a token/],
    [
      "a control character in a value",
      `GET / HTTP/1.1\r\nCookie: ${SECRET}\x01\r\n\r\n`,
      400,
      /"Cookie" has a control character/,
    ],
    [
      "a NUL in a value",
      `GET / HTTP/1.1\r\nAuthorization: ${SECRET}\0\r\n\r\n`,
      400,
      /control character/,
    ],
    [
      "DEL in a value",
      `GET / HTTP/1.1\r\nA: ${SECRET}\x7f\r\n\r\n`,
      400,
      /control character/,
    ],
    ["no final empty line", "GET / HTTP/1.1\r\nHost: a\r\n", 400, /empty line/],
    [
      "an empty line inside",
      "GET / HTTP/1.1\r\n\r\nHost: a\r\n\r\n",
      400,
      /header line 1 is empty/,
    ],
    [
      "a request line with two spaces",
      "GET  / HTTP/1.1\r\n\r\n",
      400,
      /invalid request line/,
    ],
    [
      "a request line without a version",
      "GET /\r\n\r\n",
      400,
      /invalid request line/,
    ],
    [
      "a lower-case version",
      "GET / http/1.1\r\n\r\n",
      400,
      /invalid request line/,
    ],
    [
      "a target with a space",
      "GET /a b HTTP/1.1\r\n\r\n",
      400,
      /invalid request line/,
    ],
    [
      "a method that is not a token",
      "G(T / HTTP/1.1\r\n\r\n",
      400,
      /invalid request line/,
    ],
    [
      "a leading empty line",
      "\r\nGET / HTTP/1.1\r\n\r\n",
      400,
      /invalid request line/,
    ],
    ["an empty head", "\r\n\r\n", 400, /invalid request line/],
    [
      "a status line as a request",
      "HTTP/1.1 200 OK\r\n\r\n",
      400,
      /invalid request line/,
    ],
  ];
  for (const [what, text, status, message] of requestFailures) {
    await t.step(
      `parseRequestHead() refuses ${what} with status ${status}`,
      () => {
        assert.throws(
          () => parseRequestHead(encode(text)),
          handshakeError({ status, message }),
        );
      },
    );
  }

  await t.step(
    "parseRequestHead() refuses more than maxHeaders lines with 431",
    () => {
      const lines = Array.from({ length: 101 }, (_, i) => `X-${i}: ${i}`);
      assert.throws(
        () => parseRequestHead(encode(requestText(lines))),
        handshakeError({ status: 431, message: /more than 100 header lines/ }),
      );
      assert.equal(
        parseRequestHead(encode(requestText(lines.slice(1)))).rawHeaders.length,
        100,
      );
      assert.equal(
        parseRequestHead(encode(requestText(lines)), { maxHeaders: 101 })
          .rawHeaders.length,
        101,
      );
      assert.throws(
        () =>
          parseRequestHead(encode(requestText(["A: 1"])), { maxHeaders: 0 }),
        {
          status: 431,
        },
      );
      assert.throws(
        () => parseRequestHead(encode(requestText([])), { maxHeaders: -1 }),
        RangeError,
      );
    },
  );

  const responseFailures: [string, string][] = [
    ["a status of two digits", "HTTP/1.1 10 Switching\r\n\r\n"],
    ["a status of four digits", "HTTP/1.1 1010 Switching\r\n\r\n"],
    ["a missing version", "101 Switching Protocols\r\n\r\n"],
    ["a control character in the reason", "HTTP/1.1 101 Switching\x01\r\n\r\n"],
    ["a bare LF", "HTTP/1.1 101 Switching Protocols\nUpgrade: websocket\n\n"],
    [
      "a folded line right after the status line",
      "HTTP/1.1 101 OK\r\n Upgrade: websocket\r\n\r\n",
    ],
    [
      "a control character in a folded line",
      "HTTP/1.1 101 OK\r\nUpgrade: websocket\r\n more\x01\r\n\r\n",
    ],
  ];
  await t.step(
    "parseResponseHead() replaces each obs-fold with one space (RFC 9112 §5.2)",
    () => {
      const response = parseResponseHead(encode(
        "HTTP/1.1 101 Switching Protocols\r\n" +
          "Upgrade: websocket\r\n" +
          "Set-Cookie: a=1;\r\n Path=/;  \r\n\t \tHttpOnly\r\n" +
          "X-Empty:\r\n  late\r\n" +
          "X-Blank: b\r\n \t \r\n" +
          "Connection: Upgrade\r\n\r\n",
      ));
      assert.deepEqual(response.rawHeaders, [
        ["Upgrade", "websocket"],
        ["Set-Cookie", "a=1; Path=/; HttpOnly"],
        ["X-Empty", "late"],
        ["X-Blank", "b"],
        ["Connection", "Upgrade"],
      ]);
      assert.equal(
        response.headers.get("set-cookie"),
        "a=1; Path=/; HttpOnly",
      );
      // A folded value takes part in the handshake like any other.
      const folded = parseResponseHead(encode(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n" +
          "Connection: keep-alive,\r\n Upgrade\r\n" +
          `Sec-WebSocket-Accept:\r\n ${ACCEPT}\r\n\r\n`,
      ));
      assert.equal(folded.headers.get("connection"), "keep-alive, Upgrade");
      assert.equal(folded.headers.get("sec-websocket-accept"), ACCEPT);
    },
  );

  await t.step(
    "long runs of whitespace inside values are parsed in one pass",
    () => {
      // A regex trim (/[ \t]+$/) retries at every space of an inner run:
      // this 15 KB head took 20 s of blocked event loop, and a 16 KB request
      // a quarter of a second of a server's CPU.
      const spaces = " ".repeat(15_000);
      const folds = Array.from({ length: 90 }, () => " x").join("\r\n");
      const response = parseResponseHead(encode(
        `HTTP/1.1 403 Forbidden\r\nX: a${spaces}b\r\n${folds}\r\n\r\n`,
      ));
      assert.equal(
        response.headers.get("x"),
        `a${spaces}b${" x".repeat(90)}`,
      );
      const request = parseRequestHead(encode(
        `GET / HTTP/1.1\r\nHost: a\r\nX: ${spaces}a${spaces}b${spaces}\r\n\r\n`,
      ));
      assert.equal(request.headers.get("x"), `a${spaces}b`);
    },
  );

  await t.step(
    "parseRequestHead() still refuses the same obs-fold with 400",
    () => {
      assert.throws(
        () =>
          parseRequestHead(encode(
            "GET / HTTP/1.1\r\nHost: a\r\nSet-Cookie: a=1;\r\n Path=/\r\n\r\n",
          )),
        handshakeError({
          status: 400,
          message: /line 3 uses obsolete line folding/,
        }),
      );
    },
  );

  for (const [what, text] of responseFailures) {
    await t.step(
      `parseResponseHead() refuses ${what}, without a status`,
      () => {
        assert.throws(
          () => parseResponseHead(encode(text)),
          handshakeError({
            status: undefined,
            message: /^Cannot parse HTTP response: /,
          }),
        );
      },
    );
  }
});

Deno.test("RFC 9112 readHead() reads hostile heads within its limits", async (t) => {
  await t.step(
    "reads a head from one chunk, leaving the reader usable",
    async () => {
      const head = encode(requestText(VALID_REQUEST_LINES));
      const reader = streamOf([head, encode("next")]).getReader();
      const result = await readHead(reader);
      assert.deepEqual(result.head, head);
      assert.equal(result.rest.length, 0);
      assert.equal(
        decode((await reader.read()).value ?? new Uint8Array()),
        "next",
      );
      assert.equal((await reader.read()).done, true);
    },
  );

  await t.step("reads a head split one byte at a time", async () => {
    const head = encode(requestText(VALID_REQUEST_LINES));
    const frame = Uint8Array.of(0x81, 0x85, 1, 2, 3, 4, 5, 6, 7, 8, 9);
    const bytes = Uint8Array.from([...head, ...frame]);
    const chunks = Array.from(bytes, (byte) => Uint8Array.of(byte));
    const reader = streamOf(chunks).getReader();
    const result = await readHead(reader);
    assert.deepEqual(result.head, head);
    assert.equal(result.rest.length, 0);
    assert.deepEqual(
      validateUpgradeRequest(parseRequestHead(result.head)).key,
      KEY,
    );
    assert.deepEqual(await restOf(reader), frame);
  });

  await t.step(
    "keeps copies of the chunks it holds, not views into the reader's buffers",
    async () => {
      // A producer that reuses one 64 KiB buffer for every chunk: a view
      // kept from an earlier read sees the later bytes. Deno's readable
      // does not reuse its buffers, but gives each read its own 64 KiB one,
      // which a kept view would pin.
      const head = encode(requestText(VALID_REQUEST_LINES));
      const shared = new Uint8Array(65536);
      let offset = 0;
      const stream = new ReadableStream<Uint8Array>({
        pull(controller) {
          shared.fill(0x58);
          const size = Math.min(7, head.length - offset);
          shared.set(head.subarray(offset, offset + size));
          offset += size;
          controller.enqueue(shared.subarray(0, size));
        },
      }, { highWaterMark: 0 });
      const result = await readHead(stream.getReader());
      assert.equal(decode(result.head), decode(head));
      assert.ok(
        result.head.buffer.byteLength === head.length,
        "the head owns its buffer",
      );
    },
  );

  await t.step("returns in rest the bytes after the head", async () => {
    const head = encode(requestText(VALID_REQUEST_LINES));
    const frame = Uint8Array.of(0x81, 0x80, 1, 2, 3, 4);
    const bytes = Uint8Array.from([...head, ...frame]);
    for (let split = 1; split < bytes.length; split++) {
      const reader = streamOf([bytes.slice(0, split), bytes.slice(split)])
        .getReader();
      const result = await readHead(reader);
      assert.deepEqual(result.head, head);
      const next = await reader.read();
      const after = Uint8Array.from([...result.rest, ...(next.value ?? [])]);
      assert.deepEqual(after, frame, `split at ${split}`);
      if (split === head.length) assert.equal(result.rest.length, 0);
      if (split < head.length) assert.deepEqual(result.rest, frame);
    }
    const { rest } = await readHead(streamOf([bytes]).getReader());
    assert.deepEqual(rest, frame);
    assert.ok(rest.buffer instanceof ArrayBuffer);
  });

  await t.step(
    "accepts a head of exactly maxHeadSize bytes and refuses one more",
    async () => {
      const head = encode(requestText(["Host: a"]));
      const exact = await readHead(streamOf([head]).getReader(), {
        maxHeadSize: head.length,
      });
      assert.equal(exact.head.length, head.length);
      await assert.rejects(
        readHead(streamOf([head]).getReader(), {
          maxHeadSize: head.length - 1,
        }),
        handshakeError({ status: 431 }),
      );
    },
  );

  await t.step(
    "fails at the limit, bounded, when CRLF never comes",
    async () => {
      const { stream, produced } = endless(encode("a".repeat(1000)));
      const reader = stream.getReader();
      await assert.rejects(
        readHead(reader),
        handshakeError({
          status: 431,
          message: /^Cannot read HTTP head: head is larger than 16384 bytes$/,
        }),
      );
      // The limit, plus the chunk that passed it, plus the one queued ahead.
      assert.ok(produced() <= 16384 + 2 * 1000, `read ${produced()} bytes`);
      await reader.cancel();
    },
  );

  await t.step(
    "refuses 1 MiB of header with 431, in one chunk or many",
    async () => {
      const big = encode(requestText([`X-Big: ${"a".repeat(1 << 20)}`]));
      await assert.rejects(
        readHead(streamOf([big]).getReader()),
        handshakeError({ status: 431 }),
      );
      const chunks: Uint8Array[] = [];
      for (let i = 0; i < big.length; i += 65536) {
        chunks.push(
          big.subarray(i, i + 65536),
        );
      }
      await assert.rejects(
        readHead(streamOf(chunks).getReader()),
        handshakeError({ status: 431 }),
      );
    },
  );

  await t.step("refuses 10,000 header lines with 431", async () => {
    const lines = Array.from({ length: 10_000 }, (_, i) => `X-${i}: ${i}`);
    const bytes = encode(requestText(lines));
    await assert.rejects(
      readHead(streamOf([bytes]).getReader()),
      handshakeError({ status: 431 }),
    );
    // Even when the byte limit lets them through, the line limit does not.
    const { head } = await readHead(streamOf([bytes]).getReader(), {
      maxHeadSize: 1 << 20,
    });
    assert.throws(
      () => parseRequestHead(head),
      handshakeError({ status: 431 }),
    );
  });

  await t.step("refuses obs-fold with 400", async () => {
    const bytes = encode(
      "GET / HTTP/1.1\r\nHost: a\r\nX-Long: a\r\n b\r\n\r\n",
    );
    const { head } = await readHead(streamOf([bytes]).getReader());
    assert.throws(
      () => parseRequestHead(head),
      handshakeError({ status: 400, message: /obsolete line folding/ }),
    );
  });

  await t.step("refuses a duplicate Sec-WebSocket-Key with 400", async () => {
    const bytes = requestWith((
      lines,
    ) => [...lines, `sec-websocket-key: ${createKey()}`]);
    const { head } = await readHead(streamOf([bytes]).getReader());
    assert.throws(
      () => validateUpgradeRequest(parseRequestHead(head)),
      handshakeError({
        status: 400,
        header: "sec-websocket-key",
        message: /more than once/,
      }),
    );
  });

  await t.step(
    "refuses a bare LF with 400 at once, without waiting for more",
    async () => {
      for (
        const text of [
          "GET / HTTP/1.1\nHost: a\n\n",
          "GET / HTTP/1.1\r\nHost: a\n",
          "\n",
        ]
      ) {
        const reader = streamOf([encode(text)], false).getReader();
        await assert.rejects(
          readHead(reader),
          handshakeError({ status: 400, message: /bare LF/ }),
        );
        await reader.cancel();
      }
      const reader = streamOf([encode("GET / HTTP/1.1\r"), encode("X")], false)
        .getReader();
      await assert.rejects(
        readHead(reader),
        handshakeError({ status: 400, message: /bare CR at byte 14/ }),
      );
      await reader.cancel();
    },
  );

  await t.step(
    "fails when the stream ends mid-head, saying how much came",
    async () => {
      await assert.rejects(
        readHead(
          streamOf([encode("GET / HTTP/1.1\r\n"), encode("Host: a\r\n")])
            .getReader(),
        ),
        handshakeError({
          status: 400,
          message: /^Cannot read HTTP head: connection closed after 25 bytes$/,
        }),
      );
      await assert.rejects(
        readHead(streamOf([]).getReader()),
        handshakeError({ status: 400, message: /after 0 bytes/ }),
      );
      await assert.rejects(
        readHead(streamOf([encode("GET / HTTP/1.1\r\n\r")]).getReader()),
        handshakeError({ status: 400, message: /after 17 bytes/ }),
      );
    },
  );

  await t.step("rejects with the signal's reason when aborted", async () => {
    const reason = new DOMException("Handshake timed out", "TimeoutError");
    const controller = new AbortController();
    const reader = streamOf([encode("GET / HTTP/1.1\r\n")], false).getReader();
    const promise = readHead(reader, { signal: controller.signal });
    controller.abort(reason);
    await assert.rejects(promise, (error: unknown) => error === reason);
    await assert.rejects(
      readHead(reader, { signal: AbortSignal.abort(reason) }),
      (error: unknown) => error === reason,
    );
    await reader.cancel();
  });

  await t.step(
    "refuses a maxHeadSize that is not an integer of at least 4",
    async () => {
      for (const maxHeadSize of [0, 3, 1.5, NaN, -1]) {
        await assert.rejects(
          readHead(streamOf([]).getReader(), { maxHeadSize }),
          RangeError,
        );
      }
    },
  );
});

Deno.test("RFC 9110 §15.2 readResponseHead() skips interim 1xx responses", async (t) => {
  const interim = "HTTP/1.1 100 Continue\r\n\r\n" +
    "HTTP/1.1 102 Processing\r\n\r\n" +
    "HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload\r\n\r\n";
  const final = "HTTP/1.1 101 Switching Protocols\r\n" +
    VALID_RESPONSE_LINES.join("\r\n") + "\r\n\r\n";
  const frame = Uint8Array.of(0x81, 0x02, 0x68, 0x69);

  await t.step(
    "returns the 101 after them, with the bytes that follow it, in any split",
    async () => {
      const bytes = Uint8Array.from([...encode(interim + final), ...frame]);
      const splits: Uint8Array[][] = [
        [bytes],
        Array.from(bytes, (byte) => Uint8Array.of(byte)),
      ];
      for (let split = 1; split < bytes.length; split++) {
        splits.push([bytes.slice(0, split), bytes.slice(split)]);
      }
      for (const chunks of splits) {
        const reader = streamOf(chunks).getReader();
        const result = await readResponseHead(reader);
        assert.equal(result.response.status, 101);
        assert.equal(result.interim, 3);
        assert.deepEqual(result.response.rawHeaders, [
          ["Upgrade", "websocket"],
          ["Connection", "Upgrade"],
          ["Sec-WebSocket-Accept", ACCEPT],
        ]);
        assert.deepEqual(await restOf(reader, result.rest), frame);
      }
    },
  );

  await t.step(
    "stops at 101, the final answer to an upgrade (§15.2.2), and at 2xx-5xx",
    async () => {
      const upgraded = await readResponseHead(
        streamOf([encode(final + "HTTP/1.1 100 Continue\r\n\r\n")])
          .getReader(),
      );
      assert.equal(upgraded.response.status, 101);
      assert.equal(upgraded.interim, 0);
      assert.equal(decode(upgraded.rest), "HTTP/1.1 100 Continue\r\n\r\n");
      for (const status of [200, 302, 403, 503]) {
        const result = await readResponseHead(
          streamOf([
            encode(
              `${interim}HTTP/1.1 ${status} X\r\nContent-Length: 2\r\n\r\nno`,
            ),
          ]).getReader(),
        );
        assert.equal(result.response.status, status);
        assert.equal(result.interim, 3);
        assert.equal(decode(result.rest), "no");
      }
    },
  );

  await t.step(
    "counts every head toward maxHeadSize: exactly the limit passes, one byte more fails",
    async () => {
      const bytes = encode(interim + final);
      const exact = await readResponseHead(streamOf([bytes]).getReader(), {
        maxHeadSize: bytes.length,
      });
      assert.equal(exact.response.status, 101);
      await assert.rejects(
        readResponseHead(streamOf([bytes]).getReader(), {
          maxHeadSize: bytes.length - 1,
        }),
        handshakeError({
          status: 431,
          message:
            /^Cannot read HTTP head: heads are larger than \d+ bytes together, 3 interim responses included$/,
        }),
      );
    },
  );

  await t.step(
    "fails at the limit, bounded, when 1xx responses never end",
    async () => {
      const { stream, produced } = endless(
        encode("HTTP/1.1 100 Continue\r\n\r\n".repeat(40)),
      );
      const reader = stream.getReader();
      await assert.rejects(
        readResponseHead(reader),
        handshakeError({ status: 431, message: /heads are larger than 16384/ }),
      );
      // The limit, plus the chunk that passed it, plus the one queued ahead.
      assert.ok(produced() <= 16384 + 2 * 1000, `read ${produced()} bytes`);
      await reader.cancel();
    },
  );

  await t.step("refuses a malformed interim head", async () => {
    await assert.rejects(
      readResponseHead(
        streamOf([
          encode("HTTP/1.1 100 Continue\r\nBad Name: x\r\n\r\n" + final),
        ])
          .getReader(),
      ),
      handshakeError({ status: undefined, message: /not a token|no colon/ }),
    );
    await assert.rejects(
      readResponseHead(streamOf([encode(interim)]).getReader()),
      handshakeError({
        status: 400,
        message: /connection closed after 0 bytes/,
      }),
    );
  });

  await t.step(
    "checks maxHeadSize and rejects with the signal's reason",
    async () => {
      await assert.rejects(
        readResponseHead(streamOf([]).getReader(), { maxHeadSize: 3 }),
        RangeError,
      );
      const reason = new DOMException("Handshake timed out", "TimeoutError");
      const controller = new AbortController();
      const reader = streamOf([encode(interim)], false).getReader();
      const promise = readResponseHead(reader, { signal: controller.signal });
      controller.abort(reason);
      await assert.rejects(promise, (error: unknown) => error === reason);
      await reader.cancel();
    },
  );
});

Deno.test("RFC 9112 §7.1 readBody() decodes chunked bodies within its limits", async (t) => {
  const chunked = new Headers({ "transfer-encoding": "chunked" });
  const body = "5\r\nhello\r\n" +
    '1;name=value;q="a b"\r\n,\r\n' +
    "A \t;ext\r\n wide web \r\n" +
    "0\r\nTrailer: x\r\n\r\n";
  const text = "hello, wide web ";
  const refused = (headers: Headers) => ({ status: 403, headers });

  /** readBody() over `chunks` (the first is `rest`), on a stream left open. */
  async function bodyOf(
    chunks: string[],
    headers: Headers = chunked,
    maxSize = 65536,
  ): Promise<string> {
    const [rest = "", ...more] = chunks;
    const reader = streamOf(more.map(encode), false).getReader();
    try {
      return decode(
        await readBody(
          reader,
          encode(rest),
          { status: 403, headers },
          maxSize,
          undefined,
        ),
      );
    } finally {
      await reader.cancel();
    }
  }

  await t.step(
    "decodes chunks in any split, stopping at the last chunk",
    async () => {
      assert.equal(await bodyOf([body]), text);
      assert.equal(await bodyOf(["", ...body]), text);
      for (let split = 0; split <= body.length; split++) {
        assert.equal(
          await bodyOf([body.slice(0, split), body.slice(split)]),
          text,
          `split at ${split}`,
        );
      }
      // Bytes after the last chunk are not the body's.
      assert.equal(
        await bodyOf(["3\r\nabc\r\n0\r\n\r\nHTTP/1.1 200 OK"]),
        "abc",
      );
      // Upper-case hex digits, leading zeros, a 0-length extension value.
      assert.equal(
        await bodyOf([`00B\r\n${"x".repeat(11)}\r\n000;a=\r\n`]),
        "x".repeat(11),
      );
    },
  );

  await t.step(
    "decodes when chunked is the last of several codings, and over Content-Length",
    async () => {
      assert.equal(
        await bodyOf(
          [body],
          new Headers({ "transfer-encoding": "gzip, Chunked" }),
        ),
        text,
      );
      assert.equal(
        await bodyOf(
          [body],
          new Headers({
            "transfer-encoding": "chunked",
            "content-length": "3",
          }),
        ),
        text,
      );
    },
  );

  await t.step("keeps maxSize bytes and reads no further", async () => {
    const chunk = encode(`400\r\n${"a".repeat(1024)}\r\n`);
    const { stream, produced } = endless(chunk);
    const reader = stream.getReader();
    const bytes = await readBody(
      reader,
      new Uint8Array(0),
      refused(chunked),
      3000,
      undefined,
    );
    assert.equal(decode(bytes), "a".repeat(3000));
    // Three chunks hold 3000 bytes of data; one more may be queued ahead.
    assert.ok(produced() <= 5 * chunk.length, `read ${produced()} bytes`);
    await reader.cancel();
    assert.equal(await bodyOf([body], chunked, 7), "hello, ");
    assert.equal(await bodyOf([body], chunked, 0), "");
  });

  await t.step(
    "ends at 16 KiB of framing without data, bounded",
    async () => {
      // Endless leading zeros of a size; an endless extension.
      for (const [rest, filler] of [["", "0"], ["1;", "x"]] as const) {
        const { stream, produced } = endless(encode(filler.repeat(1000)));
        const reader = stream.getReader();
        const bytes = await readBody(
          reader,
          encode(rest),
          refused(chunked),
          65536,
          undefined,
        );
        assert.equal(bytes.length, 0);
        assert.ok(produced() <= 16384 + 2 * 1000, `read ${produced()} bytes`);
        await reader.cancel();
      }
    },
  );

  const malformed: [string, string, RegExp][] = [
    [
      "a size that is not hex",
      "5\r\nhello\r\nzz\r\n",
      /not a hexadecimal number/,
    ],
    ["no size", "5\r\nhello\r\n\r\n", /not a hexadecimal number/],
    ["a negative size", "-5\r\nhello\r\n", /not a hexadecimal number/],
    [
      "a bare LF after the size",
      "5\nhello\r\n0\r\n\r\n",
      /does not end with CRLF/,
    ],
    ["a bare CR after the size", "5\rhello\r\n", /does not end with CRLF/],
    [
      "data longer than its size",
      "3\r\nhello\r\n0\r\n\r\n",
      /longer than its size/,
    ],
    ["a bare CR after the data", "3\r\nhel\rlo", /does not end with CRLF/],
    [
      "a control character in an extension",
      "3;a\x01\r\nhel\r\n",
      /control character/,
    ],
    ["a size over 2^53 - 1", "20000000000000\r\nhel", /too large/],
  ];
  for (const [what, bytes, message] of malformed) {
    await t.step(
      `ends the capture at ${what}, keeping the data before it`,
      async () => {
        const decoder = new ChunkedDecoder(65536);
        decoder.push(encode("2\r\nok\r\n" + bytes));
        assert.equal(decoder.done, true);
        assert.match(decoder.error ?? "", message);
        assertMessageStyle(decoder.error ?? "");
        const kept = decode(decoder.body);
        assert.ok(kept.startsWith("ok"), kept);
        assert.equal(await bodyOf(["2\r\nok\r\n" + bytes]), kept);
      },
    );
  }

  await t.step("ends the capture at the end of the stream", async () => {
    const reader = streamOf([encode("5\r\nhel")]).getReader();
    const bytes = await readBody(
      reader,
      encode("2\r\nok\r\n"),
      refused(chunked),
      100,
      undefined,
    );
    assert.equal(decode(bytes), "okhel");
  });

  await t.step(
    "keeps only what came with the head for other transfer codings",
    async () => {
      // The stream stays open: reading on would wait for ever.
      assert.equal(
        await bodyOf(
          ["raw", "more"],
          new Headers({ "transfer-encoding": "gzip" }),
        ),
        "raw",
      );
    },
  );

  await t.step(
    "reads up to a Content-Length of digits, and no length otherwise",
    async () => {
      const length = (value: string) =>
        new Headers({ "content-length": value });
      assert.equal(
        await bodyOf(["go", " a", "way", "!!"], length("7")),
        "go away",
      );
      assert.equal(await bodyOf(["go", " away"], length("7"), 4), "go a");
      for (const value of ["-1", "7, 7", "0x7", " ", "1e3"]) {
        assert.equal(await bodyOf(["go", " away"], length(value)), "go", value);
      }
      assert.equal(await bodyOf(["go", " away"], new Headers()), "go");
      // The stream ends early: what came is kept.
      const reader = streamOf([encode(" a")]).getReader();
      assert.equal(
        decode(
          await readBody(
            reader,
            encode("go"),
            refused(length("100")),
            100,
            undefined,
          ),
        ),
        "go a",
      );
    },
  );

  await t.step(
    "keeps what came when the signal aborts or maxWait passes",
    async () => {
      const reason = new DOMException("Handshake timed out", "TimeoutError");
      for (
        const [signal, maxWait] of [[AbortSignal.abort(reason), 5000], [
          undefined,
          50,
        ]] as const
      ) {
        // A stream left open, as an event stream answering the upgrade.
        const reader = streamOf([encode("2\r\nok")], false).getReader();
        const bytes = await readBody(
          reader,
          encode("3\r\nabc\r\n"),
          refused(chunked),
          100,
          signal,
          maxWait,
        );
        // Aborted before reading: only what came with the head.
        assert.equal(decode(bytes), signal === undefined ? "abcok" : "abc");
        await reader.cancel();
      }
    },
  );

  await t.step(
    "RFC 9112 §6.3 a 204 or 304 has no body, whatever its headers say",
    async () => {
      for (const status of [204, 304]) {
        for (
          const headers of [
            new Headers({ "content-length": "10" }),
            chunked,
          ]
        ) {
          // The stream stays open: waiting for the body would wait for ever.
          const reader = streamOf([encode("more")], false).getReader();
          const bytes = await readBody(
            reader,
            encode("rest"),
            { status, headers },
            100,
            AbortSignal.timeout(2000),
          );
          assert.equal(bytes.length, 0, `${status}`);
          await reader.cancel();
        }
      }
    },
  );
});
