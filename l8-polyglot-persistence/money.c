/*
 * money: amounts as exact decimals, and the transaction types (see money.h).
 */
#include "money.h"

#include "validate.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define WHOLE_LIMIT 10000000000.0 /* 10^10: NUMERIC(12,2) holds less */

static bool fail(json_t *errors, const char *type, const char *msg)
{
    validation_error_add(errors, type, "body", "amount", msg);
    return false;
}

bool money_validate_amount(json_t *obj, json_t *errors, char text[MONEY_TEXT_MAX])
{
    json_t *v = json_object_get(obj, "amount");
    if (v == NULL)
        return fail(errors, "missing", "Field required");
    double d;
    if (json_is_integer(v)) {
        json_int_t i = json_integer_value(v);
        if (i >= 10000000000LL || i <= -10000000000LL)
            return fail(errors, "decimal_whole_digits",
                        "Decimal input should have no more than 10 digits before the decimal "
                        "point");
        snprintf(text, MONEY_TEXT_MAX, "%lld", (long long)i);
        d = (double)i;
    } else if (json_is_real(v)) {
        d = json_real_value(v);
        if (!isfinite(d))
            return fail(errors, "finite_number", "Input should be a finite number");
        if (fabs(d) >= WHOLE_LIMIT)
            return fail(errors, "decimal_whole_digits",
                        "Decimal input should have no more than 10 digits before the decimal "
                        "point");
        snprintf(text, MONEY_TEXT_MAX, "%.2f", d);
        if (strtod(text, NULL) != d)
            return fail(errors, "decimal_max_places",
                        "Decimal input should have no more than 2 decimal places");
    } else {
        return fail(errors, "decimal_type", "Input should be a valid decimal number (not a string)");
    }
    if (!(d > 0))
        return fail(errors, "greater_than", "Input should be greater than 0");
    return true;
}

static const char *const types[] = {"deposit", "withdrawal", "purchase", "refund", "transfer",
                                    NULL};

const char *money_validate_type(json_t *obj, json_t *errors)
{
    json_t *v = json_object_get(obj, "transaction_type");
    if (v == NULL) {
        validation_error_add(errors, "missing", "body", "transaction_type", "Field required");
        return NULL;
    }
    if (!json_is_string(v)) {
        validation_error_add(errors, "string_type", "body", "transaction_type",
                             "Input should be a valid string");
        return NULL;
    }
    for (int i = 0; types[i] != NULL; i++)
        if (strcmp(json_string_value(v), types[i]) == 0)
            return types[i];
    validation_error_add(errors, "literal_error", "body", "transaction_type",
                         "Input should be 'deposit', 'withdrawal', 'purchase', 'refund' or "
                         "'transfer'");
    return NULL;
}
