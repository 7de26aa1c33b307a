// Results: how they are made from libpq's, and the result accessors.
#include <cstring>

#include "common/error.h"
#include "pg/pg.h"

namespace sluice::pg {

uint64_t now_ns() { return uv_hrtime(); }

sluice_pg_result *make_error_result(int status, bool sent, const char *message) {
  auto *r = new sluice_pg_result();
  r->status = status;
  r->sent = sent ? 1 : 0;
  r->message = message && *message ? message : sluice_strerror(status);
  return r;
}

sluice_pg_result *make_server_result(PGresult *res) {
  auto *r = new sluice_pg_result();
  r->res = res;
  r->sent = 1;
  ExecStatusType st = PQresultStatus(res);
  if (st == PGRES_FATAL_ERROR || st == PGRES_NONFATAL_ERROR || st == PGRES_BAD_RESPONSE) {
    r->status = SLUICE_EPG;
    auto field = [&](int code) {
      const char *v = PQresultErrorField(res, code);
      return std::string(v ? v : "");
    };
    r->sqlstate = field(PG_DIAG_SQLSTATE);
    r->message = field(PG_DIAG_MESSAGE_PRIMARY);
    if (r->message.empty()) r->message = PQresultErrorMessage(res);
    r->detail = field(PG_DIAG_MESSAGE_DETAIL);
    r->hint = field(PG_DIAG_MESSAGE_HINT);
  } else if (st == PGRES_PIPELINE_ABORTED) {
    r->status = SLUICE_ECANCELED;
    r->message = "not run: an earlier statement of the batch failed";
  } else if (st == PGRES_COPY_IN || st == PGRES_COPY_OUT || st == PGRES_COPY_BOTH) {
    r->status = SLUICE_ENOTSUP;
    r->message = "COPY is not supported through the pool";
  }
  return r;
}

bool is_connection_fatal(const std::string &s) {
  return (s.size() == 5 && s.compare(0, 2, "08") == 0) || s == "57P01" || s == "57P02" ||
         s == "57P03";
}

}  // namespace sluice::pg

using sluice::fail;

extern "C" {

int sluice_pg_result_status(const sluice_pg_result *r) {
  return r ? r->status : fail(SLUICE_EINVAL, "sluice_pg_result_status: result is NULL");
}
int sluice_pg_result_sent(const sluice_pg_result *r) { return r ? r->sent : 0; }
const char *sluice_pg_result_sqlstate(const sluice_pg_result *r) { return r ? r->sqlstate.c_str() : ""; }
const char *sluice_pg_result_message(const sluice_pg_result *r) { return r ? r->message.c_str() : ""; }
const char *sluice_pg_result_detail(const sluice_pg_result *r) { return r ? r->detail.c_str() : ""; }
const char *sluice_pg_result_hint(const sluice_pg_result *r) { return r ? r->hint.c_str() : ""; }

int sluice_pg_result_rows(const sluice_pg_result *r) {
  return r && r->res && r->status == 0 ? PQntuples(r->res) : 0;
}
int sluice_pg_result_columns(const sluice_pg_result *r) {
  return r && r->res && r->status == 0 ? PQnfields(r->res) : 0;
}

int64_t sluice_pg_result_affected(const sluice_pg_result *r) {
  if (!r || !r->res || r->status != 0) return -1;
  const char *n = PQcmdTuples(r->res);
  if (!n || !*n) return -1;
  return std::strtoll(n, nullptr, 10);
}

const char *sluice_pg_result_column_name(const sluice_pg_result *r, int col) {
  if (col < 0 || col >= sluice_pg_result_columns(r)) return nullptr;
  return PQfname(r->res, col);
}

uint32_t sluice_pg_result_column_type(const sluice_pg_result *r, int col) {
  if (col < 0 || col >= sluice_pg_result_columns(r)) return 0;
  return PQftype(r->res, col);
}

int sluice_pg_result_value(const sluice_pg_result *r, int row, int col, const char **value,
                           size_t *len) {
  if (!r || !value) return fail(SLUICE_EINVAL, "sluice_pg_result_value: result or value is NULL");
  int rows = sluice_pg_result_rows(r), cols = sluice_pg_result_columns(r);
  if (row < 0 || row >= rows || col < 0 || col >= cols)
    return fail(SLUICE_ERANGE, "sluice_pg_result_value: (%d, %d) is outside %d rows x %d columns",
                row, col, rows, cols);
  if (PQgetisnull(r->res, row, col)) {
    *value = nullptr;
    if (len) *len = 0;
    return 1;
  }
  *value = PQgetvalue(r->res, row, col);
  if (len) *len = size_t(PQgetlength(r->res, row, col));
  return 0;
}

void sluice_pg_result_free(sluice_pg_result *r) { delete r; }

int sluice_pg_retry_outcome(const sluice_pg_result *r, int idempotent) {
  if (r && r->status == 0) return SLUICE_RETRY_SUCCESS;
  return sluice_pg_result_retryable(r, idempotent) ? SLUICE_RETRY_RETRYABLE : SLUICE_RETRY_PERMANENT;
}

int sluice_pg_result_retryable(const sluice_pg_result *r, int idempotent) {
  if (!r) return 0;
  switch (r->status) {
    case SLUICE_ETIMEDOUT:
    case SLUICE_EEXHAUSTED:
    case SLUICE_EUNREACHABLE:
    case SLUICE_EFULL:
      return r->sent ? (idempotent ? 1 : 0) : 1;
    case SLUICE_EAMBIGUOUS:
      return idempotent ? 1 : 0;
    case SLUICE_EPG:
      if (r->sqlstate == "40001" || r->sqlstate == "40P01") return 1;
      if (sluice::pg::is_connection_fatal(r->sqlstate)) return 1;
      return 0;
    default:
      return 0;
  }
}

}  // extern "C"
