/*
 * gms.c: the gms command-line tool's entry point. Subcommands:
 *   gms audit verify|export|query|report|keygen ...   (audit_cmd.c)
 *   gms top [--metrics WHERE] [--interval S] [--once]     (top.c)
 *   gms verify [--seed N] [--ops N] [--snapshot FILE] [--prove]   (verify_cmd.c)
 *   gms version
 */
#include "cli.h"
#include "gms.h"

#include <stdio.h>
#include <string.h>

static void usage(FILE *f)
{
    fprintf(f,
            "usage: gms <command> [args]\n"
            "  audit verify DIR --key-file FILE      verify the trail's chain; exit 1 if tampered\n"
            "  audit export DIR --format jsonl       every record as one JSON object per line\n"
            "  audit query DIR [--tenant T] [--op OP] [--since TIME] [--until TIME]\n"
            "  audit report DIR --html FILE          the compliance report, per tenant\n"
            "  audit keygen FILE                     write a new random key file (mode 0600)\n"
            "  top [--metrics WHERE] [--once]        gmsd's tenants, live (docs/broker.md)\n"
            "  verify [--seed N] [--ops N] [--snapshot FILE] [--prove]\n"
            "                                        a random workload, gms_verify, and the Z3\n"
            "                                        proof of tenant isolation (docs/proofs.md)\n"
            "  version                               print the library version\n"
            "The key comes from --key-file or GMS_AUDIT_KEY_FILE. See docs/audit.md.\n");
}

int main(int argc, char **argv)
{
    if (argc < 2 || strcmp(argv[1], "help") == 0 || strcmp(argv[1], "--help") == 0 ||
        strcmp(argv[1], "-h") == 0) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    if (strcmp(argv[1], "version") == 0 || strcmp(argv[1], "--version") == 0) {
        printf("gms %d.%d.%d\n", GMS_VERSION_MAJOR, GMS_VERSION_MINOR, GMS_VERSION_PATCH);
        return 0;
    }
    if (strcmp(argv[1], "audit") == 0)
        return gms_cli_audit(argc - 2, argv + 2);
    if (strcmp(argv[1], "top") == 0)
        return gms_cli_top(argc - 2, argv + 2);
    if (strcmp(argv[1], "verify") == 0)
        return gms_cli_verify(argc - 2, argv + 2);
    fprintf(stderr, "gms: unknown command '%s'\n", argv[1]);
    usage(stderr);
    return 2;
}
