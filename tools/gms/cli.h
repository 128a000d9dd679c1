/*
 * cli.h: what the files of the gms command-line tool share.
 */
#ifndef GMS_CLI_H
#define GMS_CLI_H

#include "audit/trail.h"

#include <stdint.h>
#include <stdio.h>

int gms_cli_audit(int argc, char **argv);
/* top.c: gmsd's tenants, read from its metrics endpoint. */
int gms_cli_top(int argc, char **argv);
/* verify_cmd.c: a random workload, gms_verify, its snapshot and proof. */
int gms_cli_verify(int argc, char **argv);

/* report.c: writes the HTML compliance report of the trail in dir. */
int gms_cli_report(const char *dir, const uint8_t *key, size_t keylen, const char *html,
                   const char *title);

/* Shared formatting. */
void gms_cli_time(uint64_t ns, char *out, size_t size, int digits);
void gms_cli_json_string(FILE *f, const char *s);
const char *gms_cli_language(int l);
const char *gms_cli_level(int l);

#endif
