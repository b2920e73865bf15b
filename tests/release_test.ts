/**
 * Tests of what makes a release, as far as it can be tested without building one (`deno compile`
 * cannot fetch its runtime here): the version stands the same everywhere, the compiled programs'
 * module graphs are whole and local, their permissions are the ones the tests run them with,
 * the release workflow, scripts/compile.ts and install.sh agree on the targets and archive
 * names, install.sh installs the right build and refuses a bad one, and the smoke test the
 * workflow runs on each build passes on good programs and fails on broken ones.
 *
 * @module
 */

import assert from "node:assert/strict";
import { COMPILE_PERMISSIONS, PROGRAMS, RELEASE_TARGETS } from "../scripts/compile.ts";
import { NAME, VERSION } from "../lib/version.ts";
import {
  assertOneStderrLine,
  commandWorks,
  makeTempDir,
  pathExists,
  PROGRAM_PERMISSIONS,
  REPO_ROOT,
  runCommand,
  type RunResult,
  stderrLines,
} from "./harness.ts";

const decoder = new TextDecoder();
const text = (bytes: Uint8Array) => decoder.decode(bytes);

const config = JSON.parse(await Deno.readTextFile(`${REPO_ROOT}deno.json`));
const releaseYml = await Deno.readTextFile(`${REPO_ROOT}.github/workflows/release.yml`);
const installSh = await Deno.readTextFile(`${REPO_ROOT}install.sh`);

Deno.test("deno.json names the package, its entry module and the version lib/version.ts says", () => {
  assert.equal(config.version, VERSION, "deno.json's version and lib/version.ts's VERSION");
  assert.equal(config.name, `@${NAME}/${NAME}`);
  assert.equal(config.exports, "./mod.ts");
});

Deno.test("the programs' module graphs are whole, local and pinned", async () => {
  const lock = JSON.parse(await Deno.readTextFile(`${REPO_ROOT}deno.lock`));
  for (const entry of [...PROGRAMS.map((program) => program.entry), "mod.ts"]) {
    const result = await runCommand(Deno.execPath(), ["info", "--json", entry], { cwd: REPO_ROOT });
    assert.equal(result.code, 0, result.stderr);
    const info = JSON.parse(text(result.stdout));
    const modules: { specifier: string; error?: string }[] = info.modules;
    assert.deepEqual(modules.filter((m) => m.error), [], `${entry}: missing modules`);
    const remote = modules.map((m) => m.specifier).filter((s) => !/^(file|node|npm):/.test(s));
    assert.deepEqual(remote, [], `${entry}: modules from the network`);
    for (const name of Object.keys(info.npmPackages)) {
      assert.ok(lock.npm?.[name], `${entry}: npm package ${name} is pinned in deno.lock`);
    }
    if (entry !== "mod.ts") {
      // The portable checksum is imported on demand; compile must still find and embed it.
      assert.ok(info.npmPackages["hash-wasm@4.13.0"], `${entry}: hash-wasm is in the graph`);
    }
  }
});

Deno.test("the compiled entry points type-check", async () => {
  const entries = PROGRAMS.map((program) => program.entry);
  for (const entry of entries) assert.ok(await pathExists(`${REPO_ROOT}${entry}`), entry);
  const result = await runCommand(Deno.execPath(), ["check", ...entries, "mod.ts"], {
    cwd: REPO_ROOT,
  });
  assert.equal(result.code, 0, result.stderr);
});

Deno.test("deno task compile builds both programs with the permissions the tests run them with", async () => {
  assert.deepEqual([...COMPILE_PERMISSIONS].sort(), [...PROGRAM_PERMISSIONS].sort());
  assert.match(config.tasks.compile, /\bscripts\/compile\.ts$/);
  const dryRun = async (args: string[]) => {
    const result = await runCommand(Deno.execPath(), ["task", "compile", ...args, "--dry-run"], {
      cwd: REPO_ROOT,
    });
    assert.equal(result.code, 0, result.stderr);
    return text(result.stdout).trim().split("\n").map((line) => JSON.parse(line));
  };
  const flags = PROGRAM_PERMISSIONS;
  // The server's disk threads load their script at run time: it must be in the binary.
  const WORKER = ["--include", "lib/disk_worker.ts"];
  await Deno.stat(`${REPO_ROOT}lib/disk_worker.ts`);
  assert.deepEqual(await dryRun([]), [
    ["deno", "compile", ...flags, "--output", "dist/ferry", "client.ts"],
    [
      "deno",
      "compile",
      ...flags,
      ...WORKER,
      "--output",
      "dist/ferry-server",
      "server.ts",
    ],
  ]);
  const target = "aarch64-apple-darwin";
  const forTarget = (output: string, entry: string, include: string[] = []) => [
    "deno",
    "compile",
    ...flags,
    "--target",
    target,
    ...include,
    "--output",
    `dist/${target}/${output}`,
    entry,
  ];
  assert.deepEqual(await dryRun(["--target", target]), [
    forTarget("ferry", "client.ts"),
    forTarget("ferry-server", "server.ts", WORKER),
  ]);
  const unknown = await runCommand(
    Deno.execPath(),
    ["task", "compile", "--target", "sparc-sun-solaris", "--dry-run"],
    { cwd: REPO_ROOT },
  );
  assert.equal(unknown.code, 2);
});

/** The `target:` entries of the release workflow's build matrix, with their runners. */
function workflowMatrix(): { target: string; runner: string }[] {
  const pattern = /^\s*- target: (\S+)\n\s*runner: (\S+)$/gm;
  return [...releaseYml.matchAll(pattern)].map(([, target, runner]) => ({ target, runner }));
}

/** install.sh's platform table: `uname -s uname -m` pairs and the target each picks. */
function installTable(): { platforms: string[]; target: string }[] {
  const body = installSh.slice(installSh.indexOf("target_for() {"));
  const table = body.slice(0, body.indexOf("\n}\n"));
  const pattern = /^\s*((?:"[^"]+"(?: \| )?)+)\) echo "([^"]+)" ;;$/gm;
  return [...table.matchAll(pattern)].map(([, platforms, target]) => ({
    platforms: [...platforms.matchAll(/"([^"]+)"/g)].map(([, platform]) => platform),
    target,
  }));
}

Deno.test("the release workflow, scripts/compile.ts and install.sh agree on targets and archive names", () => {
  const matrix = workflowMatrix();
  assert.deepEqual(matrix.map((entry) => entry.target), [...RELEASE_TARGETS]);
  // Each target is built and smoke-tested on a runner of its own platform.
  const runners = Object.fromEntries(matrix.map((entry) => [entry.target, entry.runner]));
  assert.deepEqual(runners, {
    "x86_64-unknown-linux-gnu": "ubuntu-latest",
    "aarch64-unknown-linux-gnu": "ubuntu-24.04-arm",
    "x86_64-apple-darwin": "macos-13",
    "aarch64-apple-darwin": "macos-latest",
    "x86_64-pc-windows-msvc": "windows-latest",
  });
  const table = installTable();
  const unixTargets = RELEASE_TARGETS.filter((target) => !target.includes("windows"));
  assert.deepEqual(table.map((row) => row.target).sort(), [...unixTargets].sort());
  // The names the workflow uploads are the names install.sh downloads.
  assert.ok(releaseYml.includes('"out/ferry-${{ matrix.target }}.tar.gz"'), "workflow's tar.gz");
  assert.ok(installSh.includes('archive="ferry-$target.tar.gz"'), "install.sh's archive");
  assert.ok(releaseYml.includes('"out/ferry-${{ matrix.target }}.zip"'), "workflow's zip");
  assert.ok(installSh.includes("ferry-x86_64-pc-windows-msvc.zip"), "install.sh names the zip");
  assert.ok(releaseYml.includes("sha256sum -- * > SHA256SUMS"), "workflow writes SHA256SUMS");
  assert.ok(installSh.includes("fetch SHA256SUMS"), "install.sh reads SHA256SUMS");
  assert.ok(releaseYml.includes("deno task compile --target"), "workflow compiles via the task");
  assert.ok(releaseYml.includes("scripts/smoke_release.ts"), "workflow smoke-tests");
});

Deno.test("the CI workflow runs .ci/run on every push and pull request", async () => {
  const ci = await Deno.readTextFile(`${REPO_ROOT}.github/workflows/ci.yml`);
  assert.match(ci, /^on:\n {2}push:\n {2}pull_request:\n/m);
  assert.match(ci, /run: bash \.ci\/run$/m);
  assert.match(ci, /actions\/setup-node/);
});

/** This machine's platform as `uname` names it, and the release target for it. */
const HERE = {
  os: Deno.build.os === "darwin" ? "Darwin" : "Linux",
  arch: Deno.build.arch,
  target: `${Deno.build.arch}-${Deno.build.os === "darwin" ? "apple-darwin" : "unknown-linux-gnu"}`,
};

/**
 * A fake release folder: for every Unix target an archive whose `ferry` and `ferry-server` are
 * shell scripts that print their target, and a SHA256SUMS over them.
 */
async function fakeRelease(dir: string): Promise<string> {
  const release = `${dir}/release`;
  await Deno.mkdir(release);
  const sums: string[] = [];
  for (const target of RELEASE_TARGETS.filter((t) => !t.includes("windows"))) {
    const stage = `${dir}/stage-${target}`;
    await Deno.mkdir(stage);
    for (const program of ["ferry", "ferry-server"]) {
      await Deno.writeTextFile(`${stage}/${program}`, `#!/bin/sh\necho "${program} ${target}"\n`);
    }
    const archive = `ferry-${target}.tar.gz`;
    // As the release workflow packs them.
    const tar = await runCommand("tar", [
      "-czf",
      `${release}/${archive}`,
      "-C",
      stage,
      "ferry",
      "ferry-server",
    ]);
    assert.equal(tar.code, 0, tar.stderr);
    const digest = await crypto.subtle.digest(
      "SHA-256",
      await Deno.readFile(`${release}/${archive}`),
    );
    const hex = [...new Uint8Array(digest)].map((b) => b.toString(16).padStart(2, "0")).join("");
    sums.push(`${hex}  ${archive}`);
  }
  await Deno.writeTextFile(`${release}/SHA256SUMS`, sums.join("\n") + "\n");
  return release;
}

/** Runs install.sh under POSIX sh with only the given environment (and PATH). */
function install(env: Record<string, string>, args: string[] = []): Promise<RunResult> {
  return runCommand("sh", [`${REPO_ROOT}install.sh`, ...args], {
    env: { PATH: Deno.env.get("PATH") ?? "/usr/bin:/bin", HOME: "/nonexistent", ...env },
    clearEnv: true,
  });
}

async function installedTarget(bin: string, program = "ferry"): Promise<string> {
  const result = await runCommand(`${bin}/${program}`, []);
  assert.equal(result.code, 0);
  return text(result.stdout).trim().split(" ")[1];
}

Deno.test("install.sh installs the build for this machine, verified, into the folder asked for", async () => {
  await using dir = await makeTempDir();
  const release = await fakeRelease(dir.path);
  const bin = `${dir.path}/deep/bin`;
  const result = await install({ FERRY_RELEASE_URL: release, FERRY_INSTALL_DIR: bin });
  assert.equal(result.code, 0, result.stderr);
  assert.equal(
    text(result.stdout).trim(),
    `Installed ferry and ferry-server (${HERE.target}) in ${bin}`,
  );
  assert.equal(await installedTarget(bin), HERE.target);
  assert.equal(await installedTarget(bin, "ferry-server"), HERE.target);
  assert.equal((await Deno.stat(`${bin}/ferry`)).mode! & 0o777, 0o755);
  assert.deepEqual((await Array.fromAsync(Deno.readDir(bin))).map((e) => e.name).sort(), [
    "ferry",
    "ferry-server",
  ]);
});

Deno.test("install.sh picks by uname for every platform, from a file:// URL, and --dir wins", async () => {
  await using dir = await makeTempDir();
  const release = await fakeRelease(dir.path);
  for (const { platforms, target } of installTable()) {
    for (const platform of platforms) {
      const [os, arch] = platform.split(" ");
      const bin = `${dir.path}/${os}-${arch}`;
      const result = await install({
        FERRY_RELEASE_URL: `file://${release}/`,
        FERRY_UNAME_S: os,
        FERRY_UNAME_M: arch,
        FERRY_INSTALL_DIR: `${dir.path}/not-this-one`,
      }, ["--dir", bin]);
      assert.equal(result.code, 0, `${platform}: ${result.stderr}`);
      assert.equal(
        (await Deno.readTextFile(`${bin}/ferry`)).trim(),
        `#!/bin/sh\necho "ferry ${target}"`,
      );
    }
  }
  assert.equal(await pathExists(`${dir.path}/not-this-one`), false);
});

Deno.test("install.sh refuses a tampered archive in one line, and leaves the installed one alone", async () => {
  await using dir = await makeTempDir();
  const release = await fakeRelease(dir.path);
  const bin = `${dir.path}/bin`;
  assert.equal((await install({ FERRY_RELEASE_URL: release, FERRY_INSTALL_DIR: bin })).code, 0);
  const before = await Deno.readFile(`${bin}/ferry`);

  const archive = `${release}/ferry-${HERE.target}.tar.gz`;
  const bytes = await Deno.readFile(archive);
  bytes[bytes.length - 5] ^= 0xff;
  await Deno.writeFile(archive, bytes);
  const tampered = await install({ FERRY_RELEASE_URL: release, FERRY_INSTALL_DIR: bin });
  assert.equal(tampered.code, 1);
  assertOneStderrLine(tampered, /^install\.sh: checksum mismatch for ferry-.+: refusing/, {
    what: "tampered archive",
  });
  assert.equal(text(tampered.stdout), "");
  assert.deepEqual(await Deno.readFile(`${bin}/ferry`), before, "old install untouched");

  // An archive SHA256SUMS does not list is refused too.
  await Deno.writeTextFile(`${release}/SHA256SUMS`, "");
  const unlisted = await install({ FERRY_RELEASE_URL: release, FERRY_INSTALL_DIR: `${bin}2` });
  assert.equal(unlisted.code, 1);
  assertOneStderrLine(unlisted, /SHA256SUMS has no entry for ferry-.+: refusing/, {
    what: "unlisted archive",
  });
  assert.equal(await pathExists(`${bin}2`), false);
});

Deno.test("install.sh refuses an unknown platform, a missing release and Windows, in one line", async () => {
  await using dir = await makeTempDir();
  const release = await fakeRelease(dir.path);
  const bin = `${dir.path}/bin`;
  const cases: [Record<string, string>, RegExp][] = [
    [{ FERRY_UNAME_S: "Linux", FERRY_UNAME_M: "riscv64" }, /no ferry build for Linux riscv64$/],
    [{ FERRY_UNAME_S: "FreeBSD", FERRY_UNAME_M: "amd64" }, /no ferry build for FreeBSD amd64$/],
    [
      { FERRY_UNAME_S: "MINGW64_NT-10.0" },
      /on Windows, download ferry-x86_64-pc-windows-msvc\.zip/,
    ],
    [{ FERRY_RELEASE_URL: `${dir.path}/nowhere` }, /cannot download SHA256SUMS from /],
    [{ FERRY_RELEASE_URL: "ftp://example.invalid/x" }, /use https:\/\/, file:\/\/ or a folder/],
    // The checked-in copy names no repository: only the published one has a default URL.
    [{ FERRY_RELEASE_URL: "" }, /set FERRY_RELEASE_URL/],
  ];
  for (const [env, pattern] of cases) {
    const result = await install({ FERRY_RELEASE_URL: release, FERRY_INSTALL_DIR: bin, ...env });
    assert.equal(result.code, 1, JSON.stringify(env));
    assertOneStderrLine(result, pattern, { what: JSON.stringify(env) });
    assert.match(stderrLines(result)[0], /^install\.sh: /);
  }
  assert.equal(await pathExists(bin), false, "nothing installed");
  const usage = await install({}, ["--bogus"]);
  assert.equal(usage.code, 2);
});

Deno.test("the published install.sh downloads from its repository's latest or chosen release", async () => {
  await using dir = await makeTempDir();
  const release = await fakeRelease(dir.path);
  // What the publish job does to the copy it attaches to the release.
  assert.ok(releaseYml.includes('sed "s|@FERRY_REPO@|${GITHUB_REPOSITORY}|" install.sh'));
  const published = `${dir.path}/install.sh`;
  await Deno.writeTextFile(published, installSh.replace("@FERRY_REPO@", "someone/ferry"));
  // A curl on PATH that serves the fake release and notes each URL it was asked for.
  const shims = `${dir.path}/shims`;
  await Deno.mkdir(shims);
  await Deno.writeTextFile(
    `${shims}/curl`,
    `#!/bin/sh
for last; do :; done
while [ $# -gt 1 ]; do [ "$1" = -o ] && out="$2"; shift; done
echo "$last" >> "${dir.path}/urls"
cp "${release}/\${last##*/}" "$out"
`,
    { mode: 0o755 },
  );
  const run = (env: Record<string, string>) =>
    runCommand("sh", [published, "--dir", `${dir.path}/bin`], {
      env: { PATH: `${shims}:${Deno.env.get("PATH")}`, ...env },
      clearEnv: true,
    });
  const latest = await run({});
  assert.equal(latest.code, 0, latest.stderr);
  const pinned = await run({ FERRY_VERSION: "v0.1.0" });
  assert.equal(pinned.code, 0, pinned.stderr);
  const base = "https://github.com/someone/ferry/releases";
  const archive = `ferry-${HERE.target}.tar.gz`;
  assert.deepEqual((await Deno.readTextFile(`${dir.path}/urls`)).trim().split("\n"), [
    `${base}/latest/download/SHA256SUMS`,
    `${base}/latest/download/${archive}`,
    `${base}/download/v0.1.0/SHA256SUMS`,
    `${base}/download/v0.1.0/${archive}`,
  ]);
  assert.equal(await installedTarget(`${dir.path}/bin`), HERE.target);
});

Deno.test("install.sh is POSIX sh that shellcheck passes", {
  ignore: !(await commandWorks("shellcheck", ["--version"])),
}, async () => {
  const result = await runCommand("shellcheck", ["-s", "sh", `${REPO_ROOT}install.sh`]);
  assert.equal(result.code, 0, text(result.stdout));
});

/** A folder of "binaries" that run the programs from source, as the compiled ones would. */
async function sourceBinaries(dir: string, client = `${REPO_ROOT}client.ts`): Promise<string> {
  const bin = `${dir}/bin`;
  await Deno.mkdir(bin);
  const flags = PROGRAM_PERMISSIONS.join(" ");
  for (const [name, entry] of [["ferry", client], ["ferry-server", `${REPO_ROOT}server.ts`]]) {
    const script = `#!/bin/sh\nexec "${Deno.execPath()}" run ${flags} "${entry}" "$@"\n`;
    await Deno.writeTextFile(`${bin}/${name}`, script, { mode: 0o755 });
  }
  return bin;
}

function smoke(bin: string): Promise<RunResult> {
  // The permissions the release workflow runs it with.
  return runCommand(Deno.execPath(), [
    "run",
    "--allow-run",
    "--allow-read",
    "--allow-write",
    "scripts/smoke_release.ts",
    bin,
  ], { cwd: REPO_ROOT, env: { NO_COLOR: "1" } });
}

Deno.test("the release smoke test passes on working programs and fails on broken ones", async () => {
  await using dir = await makeTempDir();
  const good = await smoke(await sourceBinaries(dir.path));
  assert.equal(good.code, 0, good.stderr);
  assert.match(text(good.stdout), /^smoke test passed: /);

  // A client that claims success without moving a byte.
  await using broken = await makeTempDir();
  const fake = `${broken.path}/fake_client.ts`;
  await Deno.writeTextFile(
    fake,
    `
    if (Deno.args[0] === "--version") console.log(${JSON.stringify(`${NAME} ${VERSION}`)});
  `,
  );
  const bad = await smoke(await sourceBinaries(broken.path, fake));
  assert.equal(bad.code, 1);
  assert.match(bad.stderr, /^smoke test failed: .*: list shows smoke\.bin/);
});
