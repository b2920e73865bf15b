/**
 * The bench's private sshd, for its scp rows: a host key and a user key made in the bench's
 * temporary folder, and per case an sshd_config that listens on one loopback port, admits only
 * that user key and offers only the cipher measured. Nothing outside the folder is read or
 * changed, except that sshd run as root needs its privilege-separation folder (/run/sshd), which
 * is created if missing, as the openssh-server package would.
 *
 * @module
 */

import { join } from "node:path";

/** The ciphers of the scp rows: AES-GCM (hardware AES) and ChaCha20-Poly1305 (software). */
export const SCP_CIPHERS = ["aes128-gcm@openssh.com", "chacha20-poly1305@openssh.com"] as const;

/** One of {@link SCP_CIPHERS}. */
export type ScpCipher = typeof SCP_CIPHERS[number];

/** What the scp rows need, made once per bench run. */
export interface SshSetup {
  /** Absolute path of sshd (it refuses to start otherwise). */
  sshd: string;
  /** The folder holding keys and configs. */
  dir: string;
  /** The user scp logs in as: whoever runs the bench. */
  user: string;
  /** The user's private key. */
  userKey: string;
}

async function output(command: string, args: string[]): Promise<string | null> {
  try {
    const out = await new Deno.Command(command, { args, stdin: "null", stderr: "piped" }).output();
    return out.success ? new TextDecoder().decode(out.stdout).trim() : null;
  } catch {
    return null;
  }
}

/**
 * Makes the keys for a private sshd in `dir`, or returns why the scp rows cannot run here (sshd,
 * scp or ssh-keygen missing).
 */
export async function prepareSsh(dir: string): Promise<SshSetup | string> {
  const sshd = ["/usr/sbin/sshd", "/usr/local/sbin/sshd", "/usr/bin/sshd"].find((path) => {
    try {
      return Deno.statSync(path).isFile;
    } catch {
      return false;
    }
  });
  if (!sshd) return "sshd is not installed (apt-get install openssh-server)";
  if (
    await output("scp", ["-V"]) === null && await output("sh", ["-c", "command -v scp"]) === null
  ) {
    return "scp is not installed";
  }
  const user = await output("id", ["-un"]);
  if (!user) return "cannot tell which user runs the bench";
  await Deno.mkdir(dir, { recursive: true });
  for (const name of ["host_key", "user_key"]) {
    const made = await output("ssh-keygen", [
      "-q",
      "-t",
      "ed25519",
      "-N",
      "",
      "-f",
      join(dir, name),
    ]);
    if (made === null) return "ssh-keygen failed or is not installed";
  }
  await Deno.copyFile(join(dir, "user_key.pub"), join(dir, "authorized_keys"));
  if (await output("id", ["-u"]) === "0") {
    try {
      await Deno.mkdir("/run/sshd", { recursive: true, mode: 0o755 });
    } catch (error) {
      return `sshd needs /run/sshd, which cannot be made: ${error}`;
    }
  }
  return { sshd, dir, user, userKey: join(dir, "user_key") };
}

/** Arguments for sshd to serve `port` on 127.0.0.1 in the foreground, logging to stderr. */
export async function sshdArgs(
  setup: SshSetup,
  port: number,
  cipher: ScpCipher,
): Promise<string[]> {
  const config = join(setup.dir, `sshd-${port}.conf`);
  await Deno.writeTextFile(
    config,
    [
      `Port ${port}`,
      "ListenAddress 127.0.0.1",
      `HostKey ${join(setup.dir, "host_key")}`,
      `AuthorizedKeysFile ${join(setup.dir, "authorized_keys")}`,
      "PidFile none",
      "StrictModes no",
      "UsePAM no",
      "PasswordAuthentication no",
      "KbdInteractiveAuthentication no",
      "PermitRootLogin prohibit-password",
      `Ciphers ${cipher}`,
      "Compression no",
      "Subsystem sftp internal-sftp",
    ].join("\n") + "\n",
  );
  return ["-D", "-e", "-f", config];
}

/** Arguments for scp to copy `from` to `to` (remote paths as `remote(path)`), with `cipher`. */
export function scpArgs(
  setup: SshSetup,
  port: number,
  cipher: ScpCipher,
  from: string,
  to: string,
): string[] {
  return [
    "-q",
    "-o",
    "BatchMode=yes",
    "-o",
    "StrictHostKeyChecking=no",
    "-o",
    "UserKnownHostsFile=/dev/null",
    "-o",
    "LogLevel=ERROR",
    "-o",
    "Compression=no",
    "-i",
    setup.userKey,
    "-P",
    String(port),
    "-c",
    cipher,
    from,
    to,
  ];
}

/** A path on the private sshd's side, as scp names it. */
export function remote(setup: SshSetup, path: string): string {
  return `${setup.user}@127.0.0.1:${path}`;
}
