// Copyright 2026 the @rfc6455/websocket authors. MIT license.
// Checks of the package as a whole: exports, documentation, imports.

import assert from "node:assert/strict";

const root = new URL("../", import.meta.url);

async function readText(path: string): Promise<string> {
  return await Deno.readTextFile(new URL(path, root));
}

// The code of a module without its comments (doc examples import the
// published name and mention Deno; they are not module code).
function withoutComments(text: string): string {
  return text.replace(/\/\*[\s\S]*?\*\//g, "").replace(/^\s*\/\/.*$/gm, "");
}

async function publicFiles(): Promise<string[]> {
  const config = JSON.parse(await readText("deno.json")) as {
    exports: Record<string, string>;
  };
  return Object.entries(config.exports)
    .filter(([key]) => key !== ".")
    .map(([, path]) => path);
}

Deno.test("mod.ts re-exports every public module of deno.json", async () => {
  const mod = await readText("mod.ts");
  const files = await publicFiles();
  assert.ok(files.length >= 7, `expected the 7 public modules, got ${files}`);
  for (const file of files) {
    assert.ok(
      mod.includes(`export * from "${file}";`),
      `mod.ts does not re-export ${file}`,
    );
  }
});

Deno.test("deno.json exports use kebab-case keys for existing files", async () => {
  const config = JSON.parse(await readText("deno.json")) as {
    exports: Record<string, string>;
  };
  for (const [key, path] of Object.entries(config.exports)) {
    assert.match(key, /^\.(\/[a-z][a-z0-9-]*)?$/, `export key ${key}`);
    const stat = await Deno.stat(new URL(path, root));
    assert.ok(stat.isFile, `${path} is not a file`);
  }
});

interface DocNode {
  name: string;
  kind?: string;
  declarations?: Array<{
    kind: string;
    jsDoc?: { tags?: Array<{ kind: string }> };
  }>;
  jsDoc?: { tags?: Array<{ kind: string }> };
}

Deno.test("every exported symbol has JSDoc with an @example", async () => {
  const { stdout, success } = await new Deno.Command(Deno.execPath(), {
    args: ["doc", "--json", "mod.ts"],
    cwd: root,
    stdout: "piped",
    stderr: "inherit",
  }).output();
  assert.ok(success, "deno doc --json failed");
  const json = JSON.parse(new TextDecoder().decode(stdout)) as {
    nodes: Record<string, { symbols: DocNode[] }>;
  };
  const symbols = Object.values(json.nodes).flatMap((node) => node.symbols);
  assert.ok(symbols.length > 40, `only ${symbols.length} symbols found`);
  const missing: string[] = [];
  for (const symbol of symbols) {
    const declarations = symbol.declarations ?? [];
    const hasExample = declarations.some((declaration) =>
      (declaration.jsDoc?.tags ?? []).some((tag) => tag.kind === "example")
    );
    if (!hasExample) missing.push(symbol.name);
  }
  assert.deepEqual(
    missing,
    [],
    `symbols without an @example: ${missing.join(", ")}`,
  );
});

Deno.test("modules import only relative files, node: built-ins and nothing else", async () => {
  const importPattern =
    /(?:import|export)\s[^"']*?from\s+["']([^"']+)["']|import\(\s*["']([^"']+)["']\s*\)/g;
  for await (const entry of Deno.readDir(root)) {
    if (!entry.isFile || !entry.name.endsWith(".ts")) continue;
    const text = withoutComments(await readText(entry.name));
    for (const match of text.matchAll(importPattern)) {
      const specifier = match[1] ?? match[2]!;
      assert.ok(
        specifier.startsWith("./") || specifier.startsWith("node:"),
        `${entry.name} imports ${specifier}`,
      );
    }
  }
});

Deno.test("the sans-I/O modules use no Deno API", async () => {
  for (
    const file of [
      "frame.ts",
      "handshake.ts",
      "_http.ts",
      "_body.ts",
      "connection.ts",
      "_writer.ts",
      "deflate.ts",
      "_zlib.ts",
      "_edge.ts",
      "errors.ts",
      "broadcast.ts",
      "_broadcast.ts",
    ]
  ) {
    const text = withoutComments(await readText(file));
    assert.ok(!/\bDeno\./.test(text), `${file} uses the Deno namespace`);
  }
});
