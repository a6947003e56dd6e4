/*
 * money: a transaction's amount and type, validated before PostgreSQL sees them.
 *
 * Money is stored as NUMERIC(12,2): exact decimals, at most 10 digits before the point and 2
 * after. A JSON number reaches us through jansson as a double (validate.c parses with
 * JSON_DECODE_INT_AS_REAL; an integer, if a parser ever gives one, is exact and taken as is),
 * and a double is binary: 0.1 is not exactly 0.1. A double is accepted only when it is the double nearest to a number with
 * at most 2 decimals, that number is then the amount ("%.2f" of it parses back to the same
 * double), and its text goes to PostgreSQL as the parameter: the decimal is exact from there on.
 * Below 10^10 a double has 15-17 significant digits to spare for a 12-digit amount, so two
 * different 2-decimal amounts never share a double and every 3-decimal literal (12.345) is a
 * different double from both its neighbours (refused). What this cannot see: a literal with
 * more than 15 significant digits that rounds to a 2-decimal double (0.1000000000000000001 is
 * read as 0.10). NaN and Infinity are not JSON (the parser refuses them: json_invalid), nor is
 * 1e400 (overflow: json_invalid). Strings are refused, even "12.50": money arrives as a number.
 *
 * Sign rule: the amount is always positive; the type says which way the money goes (deposit
 * and refund credit the user, withdrawal, purchase and transfer debit them).
 */
#ifndef L8_MONEY_H
#define L8_MONEY_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

#define MONEY_TEXT_MAX 32 /* the longest amount text, with room */

/*
 * Checks member "amount" of obj. On success writes its exact decimal text ("12.30", "7") to
 * text and returns true; else appends the contract's 422 entry to errors.
 */
bool money_validate_amount(json_t *obj, json_t *errors, char text[MONEY_TEXT_MAX])
    __attribute__((warn_unused_result));

/* Checks member "transaction_type": one of the types below. Returns the canonical string
 * (static) or NULL after appending the 422 entry. */
const char *money_validate_type(json_t *obj, json_t *errors) __attribute__((warn_unused_result));

/* The SQL list of the types that credit and that debit, for CHECK constraints and totals. */
#define MONEY_CREDIT_TYPES "'deposit', 'refund'"
#define MONEY_DEBIT_TYPES  "'withdrawal', 'purchase', 'transfer'"

#endif
