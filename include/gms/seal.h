/*
 * gms/seal.h: sealed regions, integrity digests and crypto-erase
 * (docs/sealed.md).
 *
 * A sealed buffer's bytes lie in device memory encrypted with AES-256-GCM
 * under a key of its own, in chunks of GMS_SEAL_CHUNK bytes, each with a
 * 16-byte tag kept on the host. While sealed it refuses every access
 * (gms_read, gms_write, gms_fill, gms_copy, gms_buf_ptr, DLPack export:
 * GMS_E_ACCESS_DENIED); gms_unseal checks every tag before it decrypts
 * anything. Freeing a buffer that was ever sealed destroys its key
 * (crypto-erase, recorded in the audit trail).
 *
 * Keys: each buffer's data key is wrapped (AES key wrap, RFC 3394) by its
 * tenant's key-encryption key (KEK), which comes from a key file
 * (gms_seal_key_file) or from the program (gms_on_key_request). Without
 * a KEK for the tenant, gms_seal, gms_unseal and gms_digest return
 * GMS_E_ACCESS_DENIED.
 *
 * Every call follows gms.h's conventions: GMS_OK or a negative GMS_E_*
 * code, a message in gms_error_last(), nothing changed on failure.
 */
#ifndef GMS_SEAL_H
#define GMS_SEAL_H

#include "gms.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Bytes per sealed chunk (one tag each), per digest leaf, of a key, of a
 * tag and of a digest. */
#define GMS_SEAL_CHUNK 65536u
#define GMS_DIGEST_LEAF 16384u
#define GMS_SEAL_KEY_BYTES 32u
#define GMS_SEAL_TAG_BYTES 16u
#define GMS_DIGEST_BYTES 32u

/* A key provider: writes tenant's 32-byte KEK into key and returns 0, or
 * returns a negative value to refuse (gms then fails the call with
 * GMS_E_ACCESS_DENIED, naming the tenant and the value). Called with no
 * gms lock held, from the thread of the gms call that needs the key, at
 * each gms_seal, gms_unseal and gms_digest of a tenant with no key file;
 * gms zeroises its copy of the key when that call ends. */
typedef int (*gms_key_fn)(void *user, const char *tenant, uint8_t key[32]);

/* Sets the runtime's key provider (fn NULL: none). One per runtime; a
 * second call replaces the first. */
GMS_API int gms_on_key_request(gms_runtime *rt, gms_key_fn fn, void *user);

/* Reads tenant's KEK from the file at path (32 raw bytes, or 64 hex digits
 * and an optional newline) into locked memory, where it stays until the
 * runtime closes or another key file replaces it. A tenant with a key file
 * never asks the provider. GMS_E_INVALID_ARG for a file of another shape
 * (nothing changes). */
GMS_API int gms_seal_key_file(gms_runtime *rt, const char *tenant, const char *path);

/* Encrypts the buffer's bytes (its requested size) in place. The caller
 * must hold the only handle on it, read-write; a shared, imported or
 * exported buffer is GMS_E_BUSY, an already sealed one GMS_E_INVALID_ARG.
 * The first seal makes the buffer's data key; later ones reuse it with a
 * new IV, and make a new key once the old one has sealed
 * GMS_SEAL_SEALS_PER_KEY times. */
GMS_API int gms_seal(gms_context *ctx, gms_buf buf);

/* Checks every chunk's tag, then decrypts in place. A changed byte (in
 * memory or a tag) is GMS_E_CORRUPTION, whose message names the first
 * chunk that fails; the buffer then stays sealed and its bytes unchanged.
 * GMS_E_INVALID_ARG when the buffer is not sealed. */
GMS_API int gms_unseal(gms_context *ctx, gms_buf buf);

/* Whether the buffer is sealed now (*out 1 or 0). */
GMS_API int gms_is_sealed(gms_context *ctx, gms_buf buf, int *out);

/* The seals one data key makes before the next seal makes a new one:
 * the 32-bit seal counter of the IV (docs/sealed.md, "IVs"). */
#define GMS_SEAL_SEALS_PER_KEY 0xffffffffu

/* A keyed digest of bytes [off, off+len) of the buffer, computed on its
 * device, under the tenant's digest key (derived from its KEK); OpenSSL
 * can recompute it (docs/sealed.md, "Digests"). A sealed buffer is
 * GMS_E_ACCESS_DENIED; a range outside the buffer GMS_E_OUT_OF_BOUNDS. */
GMS_API int gms_digest(gms_context *ctx, gms_buf buf, uint64_t off, uint64_t len,
                       uint8_t out[32]);

#ifdef __cplusplus
}
#endif
#endif /* GMS_SEAL_H */
