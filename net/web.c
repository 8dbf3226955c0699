/*
 * web.c - the web front end's static files (usherd --web-root DIR).
 *
 * At start the whole tree under DIR is read into memory, once: regular
 * files only (symbolic links and names starting with '.' are skipped, so a
 * link out of the tree can never be served), each with its content type
 * (by extension) and an ETag (XXH3 of its bytes). A request is served by an
 * exact lookup of its percent-decoded path in that table: nothing is
 * opened at request time, so no path (with "..", encoded slashes, NULs)
 * can reach a file outside it, and no request blocks a loop on the disk.
 * Changing the files needs a restart.
 *
 * Bounds (start fails beyond them, saying which): WEB_FILES_MAX files,
 * WEB_FILE_BYTES_MAX per file, WEB_BYTES_MAX in all, WEB_DEPTH_MAX levels.
 *
 * Answers: 200 with Content-Type, ETag, Cache-Control: no-cache (clients
 * revalidate, and get 304 while the ETag matches), X-Content-Type-Options:
 * nosniff and, for HTML, a Content-Security-Policy allowing only this
 * origin (plus, for fetch, the --analytics-url origin when one is given).
 * "/" and "/dir/" serve index.html. Other methods on a file: 405.
 *
 * One file is made by usherd rather than read: /usher-config.json, what the
 * pages need to know of the server's configuration ({"analytics_url": the
 * --analytics-url origin or null}).
 */
#include "net_internal.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>

enum {
    WEB_FILES_MAX = 4096,
    WEB_FILE_BYTES_MAX = 16 * 1024 * 1024,
    WEB_BYTES_MAX = 128 * 1024 * 1024,
    WEB_DEPTH_MAX = 16,
    WEB_PATH_MAX = 512,
    WEB_ORIGIN_MAX = 200,
    WEB_CSP_MAX = 512
};

#define WEB_CONFIG_PATH "/usher-config.json"

typedef struct web_file {
    char *path; /* "/index.html" */
    char *data;
    size_t len;
    const char *type;
    char etag[24]; /* "\"<16 hex>\"" */
} web_file;

struct net_web {
    web_file *files; /* sorted by path */
    size_t n, cap, bytes;
    char csp[WEB_CSP_MAX]; /* the Content-Security-Policy header line of HTML answers */
};

static const struct {
    const char *ext, *type;
} web_types[] = {
    {".html", "text/html; charset=utf-8"},
    {".js", "text/javascript; charset=utf-8"},
    {".mjs", "text/javascript; charset=utf-8"},
    {".css", "text/css; charset=utf-8"},
    {".json", "application/json"},
    {".map", "application/json"},
    {".svg", "image/svg+xml"},
    {".png", "image/png"},
    {".jpg", "image/jpeg"},
    {".jpeg", "image/jpeg"},
    {".webp", "image/webp"},
    {".ico", "image/x-icon"},
    {".woff2", "font/woff2"},
    {".txt", "text/plain; charset=utf-8"},
    {".webmanifest", "application/manifest+json"},
};

static const char *type_of(const char *path)
{
    const char *dot = strrchr(path, '.');
    const char *slash = strrchr(path, '/');
    if (dot != NULL && (slash == NULL || dot > slash))
        for (size_t i = 0; i < sizeof(web_types) / sizeof(web_types[0]); i++)
            if (strcasecmp(dot, web_types[i].ext) == 0)
                return web_types[i].type;
    return "application/octet-stream";
}

/* Adds `data` (malloc'd, `len` bytes; owned by w from now on, freed on failure) as `path`. */
static int web_put(net_web *w, const char *path, char *data, size_t len, char *err, size_t cap)
{
    int rc = 0;
    if (w->n == WEB_FILES_MAX) {
        snprintf(err, cap, "more than %d files", WEB_FILES_MAX);
        rc = NET_ECONFIG;
    } else if (len > WEB_FILE_BYTES_MAX || w->bytes + len > WEB_BYTES_MAX) {
        snprintf(err, cap, "%s: over the limit of %d MiB a file, %d MiB in all", path,
                 WEB_FILE_BYTES_MAX >> 20, WEB_BYTES_MAX >> 20);
        rc = NET_ECONFIG;
    } else if (w->n == w->cap) {
        size_t c = w->cap ? w->cap * 2 : 64;
        web_file *f = realloc(w->files, c * sizeof(*f));
        if (f == NULL)
            rc = -ENOMEM;
        else {
            w->files = f;
            w->cap = c;
        }
    }
    web_file *f = rc == 0 ? &w->files[w->n] : NULL;
    if (f != NULL && (f->path = strdup(path)) == NULL)
        rc = -ENOMEM;
    if (rc != 0) {
        free(data);
        return rc;
    }
    f->data = data;
    f->len = len;
    f->type = type_of(path);
    snprintf(f->etag, sizeof(f->etag), "\"%016llx\"",
             (unsigned long long)XXH3_64bits(f->data, f->len));
    w->bytes += len;
    w->n++;
    return 0;
}

/* Reads `len` bytes of `fd` and adds them as `path`. */
static int web_add(net_web *w, const char *path, int fd, size_t len, char *err, size_t cap)
{
    if (len > WEB_FILE_BYTES_MAX || w->bytes + len > WEB_BYTES_MAX) /* refused before reading */
        return web_put(w, path, NULL, len, err, cap);
    char *data = malloc(len > 0 ? len : 1);
    if (data == NULL)
        return -ENOMEM;
    size_t got = 0;
    while (got < len) {
        ssize_t k = read(fd, data + got, len - got);
        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0) {
            snprintf(err, cap, "%s: %s", path, k < 0 ? strerror(errno) : "shorter than it was");
            free(data);
            return k < 0 ? -errno : NET_ECONFIG;
        }
        got += (size_t)k;
    }
    return web_put(w, path, data, len, err, cap);
}

/* Reads directory `dfd` (URL prefix `prefix`) into `w`; closes dfd. */
static int web_walk(net_web *w, int dfd, const char *prefix, int depth, char *err, size_t cap)
{
    DIR *d = fdopendir(dfd);
    if (d == NULL) {
        close(dfd);
        snprintf(err, cap, "%s: %s", prefix[0] ? prefix : "/", strerror(errno));
        return -errno;
    }
    int rc = 0;
    struct dirent *e;
    while (rc == 0 && (e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.')
            continue; /* ".", "..", and hidden files */
        char path[WEB_PATH_MAX];
        int n = snprintf(path, sizeof(path), "%s/%s", prefix, e->d_name);
        if (n < 0 || (size_t)n >= sizeof(path)) {
            snprintf(err, cap, "%s/%s: path too long", prefix, e->d_name);
            rc = NET_ECONFIG;
            break;
        }
        struct stat st;
        if (fstatat(dirfd(d), e->d_name, &st, AT_SYMLINK_NOFOLLOW) != 0) {
            snprintf(err, cap, "%s: %s", path, strerror(errno));
            rc = -errno;
        } else if (S_ISDIR(st.st_mode)) {
            if (depth >= WEB_DEPTH_MAX) {
                snprintf(err, cap, "%s: deeper than %d levels", path, WEB_DEPTH_MAX);
                rc = NET_ECONFIG;
            } else {
                int sub = openat(dirfd(d), e->d_name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW);
                rc = sub < 0 ? -errno : web_walk(w, sub, path, depth + 1, err, cap);
            }
        } else if (S_ISREG(st.st_mode)) {
            int fd = openat(dirfd(d), e->d_name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
            if (fd < 0) {
                snprintf(err, cap, "%s: %s", path, strerror(errno));
                rc = -errno;
            } else {
                rc = web_add(w, path, fd, (size_t)st.st_size, err, cap);
                close(fd);
            }
        } /* symbolic links and the rest: skipped */
    }
    closedir(d);
    return rc;
}

static int file_cmp(const void *a, const void *b)
{
    return strcmp(((const web_file *)a)->path, ((const web_file *)b)->path);
}

void net__web_free(net_web *w)
{
    if (w == NULL)
        return;
    for (size_t i = 0; i < w->n; i++) {
        free(w->files[i].path);
        free(w->files[i].data);
    }
    free(w->files);
    free(w);
}

static const web_file *web_find(const net_web *w, const char *path);

int net__web_load(const char *root, const char *analytics_url, net_web **out, char *err, size_t cap)
{
    *out = NULL;
    if (analytics_url != NULL &&
        (strlen(analytics_url) > WEB_ORIGIN_MAX || !auth_origin_valid(analytics_url))) {
        snprintf(err, cap,
                 "--analytics-url '%.*s' is not an origin http(s)://HOST[:PORT] (no path, no "
                 "trailing slash)",
                 WEB_ORIGIN_MAX, analytics_url);
        return NET_ECONFIG;
    }
    net_web *w = calloc(1, sizeof(*w));
    if (w == NULL)
        return -ENOMEM;
    int dfd = open(root, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    int rc = dfd < 0 ? -errno : web_walk(w, dfd, "", 0, err, cap);
    if (dfd < 0)
        snprintf(err, cap, "%s: %s", root, strerror(errno));
    if (rc == 0) {
        qsort(w->files, w->n, sizeof(*w->files), file_cmp);
        if (web_find(w, WEB_CONFIG_PATH) != NULL) {
            snprintf(err, cap, "%s: usherd makes this file itself; remove it from the web root",
                     WEB_CONFIG_PATH + 1);
            rc = NET_ECONFIG;
        }
    }
    if (rc == 0) {
        char *cfg = malloc(WEB_ORIGIN_MAX + 64);
        if (cfg == NULL) {
            rc = -ENOMEM;
        } else {
            int n = analytics_url
                        ? snprintf(cfg, WEB_ORIGIN_MAX + 64, "{\"analytics_url\":\"%s\"}\n",
                                   analytics_url)
                        : snprintf(cfg, WEB_ORIGIN_MAX + 64, "{\"analytics_url\":null}\n");
            rc = web_put(w, WEB_CONFIG_PATH, cfg, (size_t)n, err, cap);
        }
    }
    if (rc != 0) {
        net__web_free(w);
        return rc;
    }
    qsort(w->files, w->n, sizeof(*w->files), file_cmp);
    snprintf(w->csp, sizeof(w->csp),
             "Content-Security-Policy: default-src 'self'; connect-src 'self'%s%s; img-src 'self' "
             "data:; style-src 'self' 'unsafe-inline'; frame-ancestors 'none'\r\n",
             analytics_url ? " " : "", analytics_url ? analytics_url : "");
    *out = w;
    return 0;
}

size_t net__web_count(const net_web *w, size_t *bytes)
{
    *bytes = w != NULL ? w->bytes : 0;
    return w != NULL ? w->n : 0;
}

static const web_file *web_find(const net_web *w, const char *path)
{
    size_t lo = 0, hi = w->n;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        int c = strcmp(path, w->files[mid].path);
        if (c == 0)
            return &w->files[mid];
        if (c < 0)
            hi = mid;
        else
            lo = mid + 1;
    }
    return NULL;
}

static int hexval(char c)
{
    return c >= '0' && c <= '9'   ? c - '0'
           : c >= 'a' && c <= 'f' ? c - 'a' + 10
           : c >= 'A' && c <= 'F' ? c - 'A' + 10
                                  : -1;
}

bool net__web_serve(net_request *r, const net_web *w, const char *url, size_t path_len)
{
    if (w == NULL || path_len == 0 || url[0] != '/')
        return false;
    /* Percent-decoded; a NUL or a bad escape matches nothing. */
    char path[WEB_PATH_MAX + 16];
    size_t n = 0;
    for (size_t i = 0; i < path_len; i++) {
        char c = url[i];
        if (c == '%') {
            int hi = i + 2 < path_len ? hexval(url[i + 1]) : -1;
            int lo = i + 2 < path_len ? hexval(url[i + 2]) : -1;
            if (hi < 0 || lo < 0 || (hi == 0 && lo == 0))
                return false;
            c = (char)(hi * 16 + lo);
            i += 2;
        }
        if (n + 1 >= WEB_PATH_MAX)
            return false;
        path[n++] = c;
    }
    path[n] = '\0';
    if (path[n - 1] == '/')
        snprintf(path + n, sizeof(path) - n, "index.html");
    const web_file *f = web_find(w, path);
    if (f == NULL)
        return false;
    r->route = "static";
    if (r->method != HTTP_GET && r->method != HTTP_HEAD) {
        net__respond_problem(r, 405, "method-not-allowed", "Method not allowed",
                             "a static file is only read: GET or HEAD", NULL,
                             "Allow: GET, HEAD\r\n");
        return true;
    }
    char hdr[128 + WEB_CSP_MAX];
    bool html = strncmp(f->type, "text/html", 9) == 0;
    snprintf(hdr, sizeof(hdr),
             "ETag: %s\r\nCache-Control: no-cache\r\nX-Content-Type-Options: nosniff\r\n%s",
             f->etag, html ? w->csp : "");
    if (r->if_none_match[0] != '\0' &&
        (strstr(r->if_none_match, f->etag) != NULL || strcmp(r->if_none_match, "*") == 0)) {
        net__respond(r, 304, f->type, hdr, NULL, 0);
        return true;
    }
    net__respond(r, 200, f->type, hdr, f->data, f->len);
    return true;
}
