/**
 * Unit tests for the declared options of both programs (lib/options.ts, lib/client_args.ts,
 * lib/server_args.ts): every option is in its usage text and its reference page, each kind of
 * value parses and refuses as declared, and the per-command rule comes from the declaration.
 *
 * @module
 */

import assert from "node:assert/strict";
import {
  CLIENT_COMMANDS,
  CLIENT_OPTIONS,
  CLIENT_USAGE,
  parseClientArgs,
} from "../lib/client_args.ts";
import { UsageError } from "../lib/errors.ts";
import {
  arityOf,
  checkCommandOptions,
  formatOptions,
  MAX_TIMEOUT_SECONDS,
  type OptionTable,
  parseOptions,
} from "../lib/options.ts";
import { parseServerArgs, SERVER_OPTIONS, SERVER_USAGE } from "../lib/server_args.ts";

const flat = (text: string) => text.replaceAll("\u00a0", " ").replace(/\s+/g, " ");

for (
  const [program, table, usage, doc] of [
    ["ferry", CLIENT_OPTIONS, CLIENT_USAGE, "client.md"],
    ["ferry-server", SERVER_OPTIONS, SERVER_USAGE, "server.md"],
  ] as const
) {
  Deno.test(`${program}: --help lists every declared option with its help`, () => {
    const text = flat(usage);
    for (const [name, decl] of Object.entries(table as OptionTable)) {
      const label = (decl.short ? `-${decl.short}, ` : "") + `--${name}` +
        (decl.arg ? ` ${decl.arg}` : "");
      assert.ok(text.includes(`${label} `), `${program} --help lists ${label}`);
      assert.ok(text.includes(flat(decl.help)), `${program} --help explains --${name}`);
      if (decl.commands) {
        // An option that needs a flag names the commands with it: `put -r, get -r:`.
        const flag = decl.needs ? ` -${(table as OptionTable)[decl.needs].short}` : "";
        const owners = decl.commands.map((command) => command + flag).join(", ");
        assert.ok(text.includes(`${label} ${owners}: `), `--${name}'s commands`);
      }
    }
    for (const line of usage.split("\n")) {
      assert.ok(line.length <= 80, `${program} --help fits 80 columns: ${line}`);
    }
  });

  Deno.test(`${program}: docs/${doc} names every declared option`, async () => {
    const page = await Deno.readTextFile(new URL(`../docs/${doc}`, import.meta.url));
    for (const [name, decl] of Object.entries(table as OptionTable)) {
      assert.ok(page.includes(`\`--${name}`), `docs/${doc} documents --${name}`);
      if (decl.short) assert.ok(page.includes(`\`-${decl.short}\``), `docs/${doc}: -${decl.short}`);
    }
  });
}

Deno.test("ferry: --help lists every command with its arguments", () => {
  for (const [word, decl] of Object.entries(CLIENT_COMMANDS)) {
    const label = `  ${[word, ...decl.args].join(" ")} `;
    assert.ok(CLIENT_USAGE.split("\n").some((line) => line.startsWith(label)), label);
    assert.ok(flat(CLIENT_USAGE).includes(flat(decl.help)), `${word}'s help`);
  }
});

Deno.test("ferry: an option given to a command its declaration does not name is refused", () => {
  const commands = Object.entries(CLIENT_COMMANDS);
  let checked = 0;
  for (const [name, decl] of Object.entries(CLIENT_OPTIONS as OptionTable)) {
    if (!decl.commands) continue;
    const value = decl.kind === "flag" ? [] : ["1"];
    for (const [word, command] of commands.filter(([w]) => !decl.commands!.includes(w))) {
      const needed = Array(arityOf(word, command).min).fill("x");
      const args = ["h", "1", word, ...needed, `--${name}`, ...value];
      assert.throws(
        () => parseClientArgs(args),
        new RegExp(
          `^UsageError: Option --${name} applies to ${decl.commands.join(", ")}, not ${word}$`,
        ),
        args.join(" "),
      );
      checked++;
    }
  }
  assert.ok(checked > 20, `${checked} combinations checked`);
});

Deno.test("an option that needs another flag is refused without it, and its help says so", () => {
  const table = {
    recursive: { kind: "flag", short: "r", commands: ["put", "get", "list"], help: "tree" },
    delete: { kind: "flag", commands: ["put", "get"], needs: "recursive", help: "prune" },
  } as const satisfies OptionTable;
  const check = (args: string[], command: string) => {
    const { given } = parseOptions(table, args);
    checkCommandOptions(table, given, command);
  };
  check(["-r", "--delete"], "put");
  assert.throws(
    () => check(["--delete"], "get"),
    /^UsageError: --delete applies to put -r and get -r only$/,
  );
  assert.throws(() => check(["-r", "--delete"], "list"), /--delete applies to put, get, not list/);
  assert.match(formatOptions(table, 20), /--delete {10}put -r, get -r: prune/);
  // A program without commands: the option names what it needs.
  for (const name of ["http-qr", "http-archives", "http-public-read"]) {
    assert.throws(
      () => parseServerArgs([`--${name}`]),
      new RegExp(`^UsageError: --${name} needs --http$`),
    );
  }
  for (const name of ["s3-endpoint", "s3-region", "s3-timeout", "s3-clean-after"]) {
    assert.throws(
      () => parseServerArgs([`--${name}`, "1"]),
      new RegExp(`--${name} needs --store$`),
    );
  }
});

Deno.test("arguments' counts and shapes come from the command declaration", () => {
  assert.deepEqual(arityOf("put", CLIENT_COMMANDS.put), {
    min: 1,
    max: 2,
    names: ["LOCAL", "REMOTE"],
    shape: "put LOCAL [REMOTE]",
  });
  assert.deepEqual(arityOf("mget", CLIENT_COMMANDS.mget), {
    min: 1,
    max: Infinity,
    names: ["NAME"],
    shape: "mget NAME [NAME ...]",
  });
  assert.deepEqual(arityOf("kept", CLIENT_COMMANDS.kept).max, 0);
  assert.deepEqual(arityOf("mv", CLIENT_COMMANDS.mv).shape, "mv OLD NEW");
});

Deno.test("each kind of value parses, and refuses what it does not allow", () => {
  const table = {
    quiet: { kind: "flag", short: "q", help: "q" },
    "no-sync": { kind: "flag", key: "sync", negated: true, help: "s" },
    name: { kind: "string", help: "n" },
    file: { kind: "path", help: "f" },
    rate: { kind: "size", min: 1, hint: "use bytes", help: "r" },
    wait: { kind: "seconds", key: "waitMs", default: 1500, help: "w" },
    idle: { kind: "seconds", whole: true, help: "i" },
    age: { kind: "duration", min: 1000, help: "a" },
    tries: { kind: "count", min: 1, default: 3, help: "t" },
    port: { kind: "port", min: 0, help: "p" },
  } as const satisfies OptionTable;
  const none = parseOptions(table, ["x"]);
  assert.deepEqual(none.values, {
    quiet: false,
    sync: true,
    name: undefined,
    file: undefined,
    rate: undefined,
    waitMs: 1500,
    idle: undefined,
    age: undefined,
    tries: 3,
    port: undefined,
  });
  assert.deepEqual(none.positionals, ["x"]);
  assert.equal(none.given.size, 0);
  const all = parseOptions(table, [
    "-q",
    "--no-sync",
    "--name=",
    "--file",
    "a b",
    "--rate",
    "2K",
    "--wait",
    "0.25",
    "--idle",
    "0",
    "--age",
    "2m",
    "--tries",
    "7",
    "--port",
    "0",
  ]);
  assert.deepEqual(all.values, {
    quiet: true,
    sync: false,
    name: "",
    file: "a b",
    rate: 2048,
    waitMs: 250,
    idle: 0,
    age: 120_000,
    tries: 7,
    port: 0,
  });
  assert.equal(all.given.size, 10);
  const refusals: [string[], RegExp][] = [
    [["--file", ""], /^--file is empty$/],
    [["--rate", "0"], /^Invalid --rate "0": use bytes$/],
    [["--wait", "0"], /^Invalid --wait "0": expected seconds, more than 0/],
    [["--wait", String(MAX_TIMEOUT_SECONDS + 1)], /at most 2147483$/],
    [["--idle", "1.5"], /^Invalid --idle "1.5": expected a whole number of at least 0/],
    [["--idle", String(MAX_TIMEOUT_SECONDS + 1)], /^Invalid --idle/],
    [["--age", "0.5s"], /^Invalid --age "0.5s"/],
    [["--tries", "0"], /^Invalid --tries "0": expected a whole number of at least 1$/],
    [["--tries", "1e3"], /^Invalid --tries/],
    [["--port", "65536"], /^Invalid port "65536"/],
    [["--bogus"], /^Unknown option '--bogus'/],
  ];
  for (const [args, pattern] of refusals) {
    assert.throws(() => parseOptions(table, args), (error: unknown) => {
      assert.ok(error instanceof UsageError, args.join(" "));
      assert.match(error.message, pattern);
      return true;
    });
  }
});

Deno.test("an empty secret or certificate path is a usage error, not a silent 'none'", () => {
  // An unset shell variable (--token-file "$TOKEN") once meant no token at all on both sides,
  // and an empty --tls-cert/--tls-key pair meant no TLS.
  assert.throws(() => parseServerArgs(["--token-file", ""]), /^UsageError: --token-file is empty$/);
  assert.throws(
    () => parseServerArgs(["--tls-cert", "", "--tls-key", ""]),
    /^UsageError: --tls-cert is empty$/,
  );
  assert.throws(() => parseServerArgs(["--tls", "--state-dir", ""]), /--state-dir is empty/);
  assert.throws(
    () => parseClientArgs(["h", "1", "list", "--token-file="]),
    /^UsageError: --token-file is empty$/,
  );
  assert.throws(() => parseClientArgs(["h", "1", "list", "--ca", ""]), /--ca is empty/);
});

Deno.test("a command word is one of the declared commands, not any property name", () => {
  const words = Object.keys(CLIENT_COMMANDS);
  const expected = `${words.slice(0, -1).join(", ")} or ${words.at(-1)}`;
  assert.equal(expected, "put, get, list, kept, mput, mget, trust, rm, mv or mkdir");
  for (const word of ["toString", "constructor", "__proto__", "hasOwnProperty"]) {
    assert.throws(
      () => parseClientArgs(["h", "1", word]),
      (error: unknown) => {
        assert.ok(error instanceof UsageError);
        assert.equal(error.message, `Unknown command "${word}": expected ${expected}`);
        return true;
      },
    );
  }
});

Deno.test("server: a whole-second timeout setTimeout cannot wait is refused", () => {
  assert.equal(parseServerArgs(["--idle-timeout", "0"]).idleTimeoutMs, 0);
  assert.equal(
    parseServerArgs(["--idle-timeout", String(MAX_TIMEOUT_SECONDS)]).idleTimeoutMs,
    MAX_TIMEOUT_SECONDS * 1000,
  );
  assert.throws(
    () => parseServerArgs(["--idle-timeout", String(MAX_TIMEOUT_SECONDS + 1)]),
    /Invalid --idle-timeout "2147484"/,
  );
  assert.throws(() => parseServerArgs(["--handshake-timeout", "9999999999"]), /at most/);
});

Deno.test("server: --no-keep, --keep-budget and --keep-for", () => {
  assert.equal(parseServerArgs(["--no-keep"]).keepBudget, 0);
  assert.equal(parseServerArgs(["--no-keep", "--keep-budget", "0"]).keepBudget, 0);
  assert.equal(parseServerArgs(["--keep-budget", "1G"]).keepBudget, 2 ** 30);
  assert.equal(parseServerArgs(["--keep-for", "90"]).keepForMs, 90_000);
  assert.throws(() => parseServerArgs(["--no-keep", "--keep-budget", "1G"]), /contradicts/);
  assert.throws(() => parseServerArgs(["--keep-for", "0"]), /Invalid --keep-for "0"/);
  assert.throws(() => parseServerArgs(["--keep-budget", "lots"]), /Invalid --keep-budget/);
});
