package sluice

/*
#include "shim.h"
*/
import "C"

import (
	"database/sql/driver"
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	"reflect"
	"strconv"
	"strings"
	"time"
	"unsafe"
)

// ---- parameters ------------------------------------------------------------

// stmtBlock is one statement in C memory: the parameter arrays, the SQL and
// the values, in a single malloc. cgo does not let C keep Go memory that
// holds Go pointers (the values array would), and the library copies
// everything before the start call returns, so the block is freed right
// after it.
type stmtBlock struct {
	mem     unsafe.Pointer
	sql     *C.char
	n       C.int
	values  **C.char
	lengths *C.int
	formats *C.int
}

// param is one encoded parameter: text (NUL-terminated in the block, the
// library reads it with strlen) or binary ([]byte, with its length).
type param struct {
	text   string
	bin    []byte
	null   bool
	binary bool
}

func badParam(i int, format string, a ...any) error {
	return newError(CodeInvalid, fmt.Sprintf("parameter $%d: ", i+1)+fmt.Sprintf(format, a...))
}

func formatFloat(f float64, bits int) string {
	switch {
	case math.IsInf(f, 1):
		return "Infinity"
	case math.IsInf(f, -1):
		return "-Infinity"
	case math.IsNaN(f):
		return "NaN"
	}
	return strconv.FormatFloat(f, 'g', -1, bits)
}

func textParam(i int, s string) (param, error) {
	if strings.IndexByte(s, 0) >= 0 {
		return param{}, badParam(i, "text contains a NUL byte (PostgreSQL text cannot hold one; pass []byte for bytea)")
	}
	return param{text: s}, nil
}

// encodeParam converts one argument: nil is NULL, []byte is sent binary
// (bytea), strings as they are, bool as t/f, numbers in decimal, time.Time
// as RFC 3339 with nanoseconds; driver.Valuer, pointers (nil: NULL) and
// named types of those kinds are unwrapped.
func encodeParam(i int, a any, depth int) (param, error) {
	switch v := a.(type) {
	case nil:
		return param{null: true}, nil
	case string:
		return textParam(i, v)
	case []byte:
		if v == nil {
			return param{null: true}, nil
		}
		return param{bin: v, binary: true}, nil
	case bool:
		if v {
			return param{text: "t"}, nil
		}
		return param{text: "f"}, nil
	case int:
		return param{text: strconv.FormatInt(int64(v), 10)}, nil
	case int8:
		return param{text: strconv.FormatInt(int64(v), 10)}, nil
	case int16:
		return param{text: strconv.FormatInt(int64(v), 10)}, nil
	case int32:
		return param{text: strconv.FormatInt(int64(v), 10)}, nil
	case int64:
		return param{text: strconv.FormatInt(v, 10)}, nil
	case uint:
		return param{text: strconv.FormatUint(uint64(v), 10)}, nil
	case uint8:
		return param{text: strconv.FormatUint(uint64(v), 10)}, nil
	case uint16:
		return param{text: strconv.FormatUint(uint64(v), 10)}, nil
	case uint32:
		return param{text: strconv.FormatUint(uint64(v), 10)}, nil
	case uint64:
		return param{text: strconv.FormatUint(v, 10)}, nil
	case float32:
		return param{text: formatFloat(float64(v), 32)}, nil
	case float64:
		return param{text: formatFloat(v, 64)}, nil
	case time.Time:
		return param{text: v.Format(time.RFC3339Nano)}, nil
	}
	if depth > 4 {
		return param{}, badParam(i, "%T unwraps too deeply", a)
	}
	rv := reflect.ValueOf(a)
	if rv.Kind() == reflect.Pointer && rv.IsNil() {
		return param{null: true}, nil
	}
	if vr, ok := a.(driver.Valuer); ok {
		v, err := vr.Value()
		if err != nil {
			return param{}, badParam(i, "%T.Value: %v", a, err)
		}
		return encodeParam(i, v, depth+1)
	}
	switch rv.Kind() {
	case reflect.Pointer:
		return encodeParam(i, rv.Elem().Interface(), depth+1)
	case reflect.String:
		return textParam(i, rv.String())
	case reflect.Bool:
		return encodeParam(i, rv.Bool(), depth+1)
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return param{text: strconv.FormatInt(rv.Int(), 10)}, nil
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return param{text: strconv.FormatUint(rv.Uint(), 10)}, nil
	case reflect.Float32:
		return param{text: formatFloat(rv.Float(), 32)}, nil
	case reflect.Float64:
		return param{text: formatFloat(rv.Float(), 64)}, nil
	case reflect.Slice:
		if rv.Type().Elem().Kind() == reflect.Uint8 {
			return encodeParam(i, rv.Bytes(), depth+1)
		}
	}
	return param{}, badParam(i, "unsupported type %T", a)
}

// encodeStatement copies sql and args into one C block; the caller frees
// blk.mem with C.free.
func encodeStatement(sql string, args []any) (*stmtBlock, error) {
	if strings.IndexByte(sql, 0) >= 0 {
		return nil, newError(CodeInvalid, "the SQL contains a NUL byte")
	}
	if len(args) > 65535 {
		return nil, newError(CodeInvalid, fmt.Sprintf("%d parameters; PostgreSQL takes at most 65535", len(args)))
	}
	n := len(args)
	ps := make([]param, n)
	const ptrSize, intSize = unsafe.Sizeof((*C.char)(nil)), unsafe.Sizeof(C.int(0))
	size := uintptr(n)*(ptrSize+2*intSize) + uintptr(len(sql)) + 1
	for i, a := range args {
		p, err := encodeParam(i, a, 0)
		if err != nil {
			return nil, err
		}
		if p.binary && len(p.bin) > math.MaxInt32 {
			return nil, badParam(i, "%d bytes is too long", len(p.bin))
		}
		ps[i] = p
		size += uintptr(len(p.text)+len(p.bin)) + 1
	}
	mem := C.malloc(C.size_t(size))
	blk := &stmtBlock{mem: mem, n: C.int(n)}
	buf := unsafe.Slice((*byte)(mem), size)
	off := uintptr(n) * (ptrSize + 2*intSize)
	put := func(b []byte, s string) *C.char {
		at := off
		off += uintptr(copy(buf[off:], b))
		off += uintptr(copy(buf[off:], s))
		buf[off] = 0
		off++
		return (*C.char)(unsafe.Pointer(&buf[at]))
	}
	blk.sql = put(nil, sql)
	if n > 0 {
		blk.values = (**C.char)(mem)
		blk.lengths = (*C.int)(unsafe.Add(mem, uintptr(n)*ptrSize))
		blk.formats = (*C.int)(unsafe.Add(mem, uintptr(n)*(ptrSize+intSize)))
		values := unsafe.Slice(blk.values, n)
		lengths := unsafe.Slice(blk.lengths, n)
		formats := unsafe.Slice(blk.formats, n)
		for i, p := range ps {
			values[i], lengths[i], formats[i] = nil, 0, 0
			switch {
			case p.null:
			case p.binary:
				values[i], lengths[i], formats[i] = put(p.bin, ""), C.int(len(p.bin)), 1
			default:
				values[i], lengths[i] = put(nil, p.text), C.int(len(p.text))
			}
		}
	}
	return blk, nil
}

// ---- results -----------------------------------------------------------------

// ErrNoRows is Row.Scan's error when the statement returned no row.
var ErrNoRows = errors.New("sluice: no rows in result set")

// Rows is a statement's result, read row by row as with database/sql. The
// whole result arrived before Query returned, so nothing here waits.
// Next returning false, or Close, frees it. Not for concurrent use.
type Rows struct {
	res      *C.sluice_pg_result
	row      int
	nrows    int
	affected int64
	cols     []string
	oids     []uint32
	vals     []*C.char
	lens     []C.size_t
	err      error
}

func newRows(res *C.sluice_pg_result) *Rows {
	n := int(C.sluice_pg_result_columns(res))
	rs := &Rows{
		res:      res,
		row:      -1,
		nrows:    int(C.sluice_pg_result_rows(res)),
		affected: int64(C.sluice_pg_result_affected(res)),
		cols:     make([]string, n),
		oids:     make([]uint32, n),
	}
	if n > 0 {
		names := make([]*C.char, n)
		oids := make([]C.uint32_t, n)
		C.sg_pg_columns(res, C.int(n), &names[0], &oids[0])
		for i := range names {
			rs.cols[i] = C.GoString(names[i])
			rs.oids[i] = uint32(oids[i])
		}
		rs.vals = make([]*C.char, n)
		rs.lens = make([]C.size_t, n)
	}
	return rs
}

// Columns are the result's column names.
func (rs *Rows) Columns() []string { return rs.cols }

// ColumnOIDs are the PostgreSQL type OIDs of the columns (23 int4, 25 text,
// ...).
func (rs *Rows) ColumnOIDs() []uint32 { return rs.oids }

// Affected is the number of rows the statement affected (INSERT, UPDATE,
// DELETE, SELECT, ...), or -1 if it reports none.
func (rs *Rows) Affected() int64 { return rs.affected }

// Next moves to the next row; false at the end, which also closes Rows.
func (rs *Rows) Next() bool {
	if rs.res == nil {
		return false
	}
	rs.row++
	if rs.row >= rs.nrows {
		rs.Close()
		return false
	}
	if len(rs.vals) > 0 {
		if rc := C.sg_pg_row(rs.res, C.int(rs.row), C.int(len(rs.vals)), &rs.vals[0], &rs.lens[0]); rc < 0 {
			rs.err = newError(Code(rc), fmt.Sprintf("reading row %d", rs.row))
			rs.Close()
			return false
		}
	}
	return true
}

// Err is the error that ended Next early, if any.
func (rs *Rows) Err() error { return rs.err }

// Close frees the result. Calling it again does nothing.
func (rs *Rows) Close() error {
	if rs.res != nil {
		freeResult(rs.res)
		rs.res = nil
		for i := range rs.vals {
			rs.vals[i] = nil
		}
	}
	return nil
}

// Scanner is implemented by destinations that convert a value themselves,
// such as database/sql's NullString, NullInt64 and NullTime. src is nil
// (NULL), int64, float64, bool, []byte (bytea), time.Time (date,
// timestamp, timestamptz) or string (everything else, numeric included).
type Scanner interface {
	Scan(src any) error
}

// Scan copies the current row's columns into dest, one per column:
// *string, *[]byte, *int*, *uint*, *float32, *float64, *bool, *time.Time,
// *any, a Scanner, or a pointer to a pointer of those (**string, **int64,
// ...) which is set to nil for NULL. NULL into anything else is an error.
func (rs *Rows) Scan(dest ...any) error {
	if rs.res == nil || rs.row < 0 || rs.row >= rs.nrows {
		return newError(CodeState, "Scan without a current row (call Next first)")
	}
	if len(dest) != len(rs.cols) {
		return newError(CodeInvalid, fmt.Sprintf("Scan: %d destinations for %d columns", len(dest), len(rs.cols)))
	}
	for i, d := range dest {
		var raw *string
		if v := rs.vals[i]; v != nil {
			s := C.GoStringN(v, C.int(rs.lens[i]))
			raw = &s
		}
		if err := scanValue(d, rs.oids[i], raw); err != nil {
			return newError(CodeInvalid, fmt.Sprintf("Scan column %d (%q): %v", i, rs.cols[i], err))
		}
	}
	return nil
}

// Row is the result of QueryRow.
type Row struct {
	rows *Rows
	err  error
}

// Scan copies the first row into dest (as Rows.Scan) and frees the
// result; ErrNoRows if there is none, or the query's error.
func (r *Row) Scan(dest ...any) error {
	if r.err != nil {
		return r.err
	}
	defer r.rows.Close()
	if !r.rows.Next() {
		if r.rows.err != nil {
			return r.rows.err
		}
		return ErrNoRows
	}
	return r.rows.Scan(dest...)
}

// Err is the query's error, if any (Scan returns it too).
func (r *Row) Err() error { return r.err }

// Type OIDs decoded by Scan into *any and Scanners.
const (
	oidBool        = 16
	oidBytea       = 17
	oidInt8        = 20
	oidInt2        = 21
	oidInt4        = 23
	oidOID         = 26
	oidFloat4      = 700
	oidFloat8      = 701
	oidDate        = 1082
	oidTimestamp   = 1114
	oidTimestamptz = 1184
)

// natural is the Go value of a column's text for *any and Scanners.
func natural(oid uint32, s string) (any, error) {
	switch oid {
	case oidBool:
		return s == "t", nil
	case oidBytea:
		return decodeBytea(s)
	case oidInt2, oidInt4, oidInt8, oidOID:
		return strconv.ParseInt(s, 10, 64)
	case oidFloat4, oidFloat8:
		return strconv.ParseFloat(s, 64)
	case oidDate, oidTimestamp, oidTimestamptz:
		return parseTime(oid, s)
	}
	return s, nil
}

// decodeBytea reads bytea's hex text format (\x...), the server default;
// other text comes back as its bytes.
func decodeBytea(s string) ([]byte, error) {
	if strings.HasPrefix(s, `\x`) {
		return hex.DecodeString(s[2:])
	}
	return []byte(s), nil
}

// parseTime reads PostgreSQL's ISO output (DateStyle ISO, the default):
// date and timestamp as UTC, timestamptz with its offset; other columns
// also as RFC 3339.
func parseTime(oid uint32, s string) (time.Time, error) {
	var layouts []string
	switch oid {
	case oidDate:
		layouts = []string{"2006-01-02"}
	case oidTimestamp:
		layouts = []string{"2006-01-02 15:04:05"}
	default:
		layouts = []string{"2006-01-02 15:04:05-07", "2006-01-02 15:04:05-07:00",
			"2006-01-02 15:04:05-07:00:00", time.RFC3339Nano}
	}
	var err error
	for _, l := range layouts {
		var t time.Time
		if t, err = time.ParseInLocation(l, s, time.UTC); err == nil {
			return t, nil
		}
	}
	return time.Time{}, fmt.Errorf("cannot read %q as a time: %v", s, err)
}

func scanInt(s string, bits int) (int64, error) { return strconv.ParseInt(s, 10, bits) }

func scanUint(s string, bits int) (uint64, error) { return strconv.ParseUint(s, 10, bits) }

// scanValue stores one column (raw nil for NULL) into dest.
func scanValue(dest any, oid uint32, raw *string) error {
	if raw == nil {
		return scanNull(dest)
	}
	s := *raw
	var err error
	switch d := dest.(type) {
	case *string:
		*d = s
	case *[]byte:
		if oid == oidBytea {
			*d, err = decodeBytea(s)
		} else {
			*d = []byte(s)
		}
	case *bool:
		*d, err = strconv.ParseBool(s)
	case *int:
		var v int64
		v, err = scanInt(s, strconv.IntSize)
		*d = int(v)
	case *int8:
		var v int64
		v, err = scanInt(s, 8)
		*d = int8(v)
	case *int16:
		var v int64
		v, err = scanInt(s, 16)
		*d = int16(v)
	case *int32:
		var v int64
		v, err = scanInt(s, 32)
		*d = int32(v)
	case *int64:
		*d, err = scanInt(s, 64)
	case *uint:
		var v uint64
		v, err = scanUint(s, strconv.IntSize)
		*d = uint(v)
	case *uint8:
		var v uint64
		v, err = scanUint(s, 8)
		*d = uint8(v)
	case *uint16:
		var v uint64
		v, err = scanUint(s, 16)
		*d = uint16(v)
	case *uint32:
		var v uint64
		v, err = scanUint(s, 32)
		*d = uint32(v)
	case *uint64:
		*d, err = scanUint(s, 64)
	case *float32:
		var v float64
		v, err = strconv.ParseFloat(s, 32)
		*d = float32(v)
	case *float64:
		*d, err = strconv.ParseFloat(s, 64)
	case *time.Time:
		*d, err = parseTime(oid, s)
	case *any:
		*d, err = natural(oid, s)
	case Scanner:
		var v any
		if v, err = natural(oid, s); err == nil {
			err = d.Scan(v)
		}
	case **string:
		*d = &s
	case **[]byte:
		v := []byte(s)
		if oid == oidBytea {
			v, err = decodeBytea(s)
		}
		*d = &v
	case **bool:
		var v bool
		v, err = strconv.ParseBool(s)
		*d = &v
	case **int:
		var v int64
		v, err = scanInt(s, strconv.IntSize)
		x := int(v)
		*d = &x
	case **int32:
		var v int64
		v, err = scanInt(s, 32)
		x := int32(v)
		*d = &x
	case **int64:
		var v int64
		v, err = scanInt(s, 64)
		*d = &v
	case **float64:
		var v float64
		v, err = strconv.ParseFloat(s, 64)
		*d = &v
	case **time.Time:
		var v time.Time
		v, err = parseTime(oid, s)
		*d = &v
	default:
		return fmt.Errorf("cannot scan into %T", dest)
	}
	return err
}

func scanNull(dest any) error {
	switch d := dest.(type) {
	case *any:
		*d = nil
	case *[]byte:
		*d = nil
	case Scanner:
		return d.Scan(nil)
	case **string:
		*d = nil
	case **[]byte:
		*d = nil
	case **bool:
		*d = nil
	case **int:
		*d = nil
	case **int32:
		*d = nil
	case **int64:
		*d = nil
	case **float64:
		*d = nil
	case **time.Time:
		*d = nil
	default:
		return fmt.Errorf("NULL cannot be stored in %T (use *any, a pointer to a pointer, or a Scanner such as sql.NullString)", dest)
	}
	return nil
}
