/*
 * <h2o/http2_internal.h> (libh2o-dev 2.2.5) includes "khash.h", which the
 * Debian package does not ship. edge.c needs that header only for the layout
 * of h2o_http2_conn_t and never touches the stream table: this stand-in
 * declares the table as an opaque type. h2o_http2_conn_get_stream(), whose
 * inline body needs the real khash, must not be called with it.
 */
#ifndef RD_COMPAT_KHASH_H
#define RD_COMPAT_KHASH_H

typedef unsigned khiter_t;
#define KHASH_MAP_INIT_INT64(name, type) typedef struct rd_kh_##name kh_##name##_t;
#define khash_t(name)                    kh_##name##_t
#define kh_get(name, h, k)               ((void)(h), (void)(k), 0u)
#define kh_end(h)                        ((void)(h), 0u)
#define kh_val(h, x)                     ((void)(h), (void)(x), NULL)

#endif
