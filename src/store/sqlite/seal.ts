/**
 * Sealing secret values: AES-256-GCM under a key kept in a file beside the database (`secrets.key`,
 * 32 random bytes, 0600, made on first use). The database holds only sealed values, so a copy of it
 * — a backup, a file handed over for debugging — reveals nothing without the key file.
 *
 * A sealed value is `version (1 byte) | IV (12) | tag (16) | ciphertext`. The secret's name is the
 * additional authenticated data: a sealed value copied to another name's row does not open.
 */
import { createCipheriv, createDecipheriv, randomBytes } from "node:crypto";
import { chmodSync, closeSync, existsSync, openSync, readFileSync, writeSync } from "node:fs";
import { FuncdError } from "../../shared/errors.js";

const VERSION = 1;
const KEY_BYTES = 32;
const IV_BYTES = 12;
const TAG_BYTES = 16;

/** Seals and opens values; the key is read (or made) the first time either is called. */
export interface Sealer {
  seal(name: string, value: Buffer): Buffer;
  open(name: string, sealed: Buffer): Buffer;
}

/**
 * A sealer whose key lives in `keyFile` (created with 32 random bytes, mode 0600, when missing), or —
 * with `null` — in memory only, for in-memory stores.
 */
export function keyFileSealer(keyFile: string | null): Sealer {
  let key: Buffer | undefined;
  // Only sealing makes a key: a missing key file while opening means the sealed values are lost.
  const theKey = (create: boolean): Buffer => {
    key ??= keyFile === null ? randomBytes(KEY_BYTES) : loadKey(keyFile, create);
    return key;
  };
  return {
    seal(name, value) {
      const iv = randomBytes(IV_BYTES);
      const cipher = createCipheriv("aes-256-gcm", theKey(true), iv);
      cipher.setAAD(aad(name));
      const body = Buffer.concat([cipher.update(value), cipher.final()]);
      return Buffer.concat([Buffer.from([VERSION]), iv, cipher.getAuthTag(), body]);
    },
    open(name, sealed) {
      const where = keyFile === null ? "the in-memory key" : keyFile;
      if (sealed.length < 1 + IV_BYTES + TAG_BYTES || sealed[0] !== VERSION) {
        throw new FuncdError(
          "CONFIG_INVALID",
          `Cannot open secret "${name}": its stored value is not in a format this funcd knows`,
        );
      }
      const iv = sealed.subarray(1, 1 + IV_BYTES);
      const tag = sealed.subarray(1 + IV_BYTES, 1 + IV_BYTES + TAG_BYTES);
      const body = sealed.subarray(1 + IV_BYTES + TAG_BYTES);
      const secretKey = theKey(false);
      try {
        const decipher = createDecipheriv("aes-256-gcm", secretKey, iv);
        decipher.setAAD(aad(name));
        decipher.setAuthTag(tag);
        return Buffer.concat([decipher.update(body), decipher.final()]);
      } catch (err) {
        // GCM's tag check failed: another key, or a value that was tampered with or moved between names.
        throw new FuncdError(
          "CONFIG_INVALID",
          `Cannot open secret "${name}" with the key in ${where}: the key does not match the one it was sealed with (was the key file replaced or lost?); set the secret again`,
          { cause: err },
        );
      }
    },
  };
}

function aad(name: string): Buffer {
  return Buffer.from(`funcd-secret\0${name}`);
}

/**
 * Reads the key file, or with `create` makes it when missing (exclusively, so two creators cannot each
 * write their own key).
 */
function loadKey(file: string, create: boolean): Buffer {
  if (!create && !existsSync(file)) {
    throw new FuncdError(
      "CONFIG_INVALID",
      `The secrets key file ${file} is missing, so the stored secrets cannot be opened: restore it from a backup, or set the secrets again`,
    );
  }
  try {
    const fd = openSync(file, "wx", 0o600);
    try {
      const key = randomBytes(KEY_BYTES);
      writeSync(fd, key);
      return key;
    } finally {
      closeSync(fd);
      // Whatever the umask did: only the daemon's user reads the key.
      chmodSync(file, 0o600);
    }
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== "EEXIST") {
      throw new FuncdError("CONFIG_INVALID", `Cannot create the secrets key file ${file}: ${String(err)}`, {
        cause: err,
      });
    }
  }
  const key = readFileSync(file);
  if (key.length !== KEY_BYTES) {
    throw new FuncdError(
      "CONFIG_INVALID",
      `The secrets key file ${file} holds ${key.length} bytes, not ${KEY_BYTES}: it is damaged (restore it from a backup; without it the stored secrets cannot be opened)`,
    );
  }
  return key;
}
