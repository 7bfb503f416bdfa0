package server

import (
	"encoding/json"
	"reflect"
	"regexp"
	"strings"
	"time"
)

// openAPI builds the OpenAPI 3.1 document from the route table itself, so
// that the document and the routes cannot drift apart (a test checks
// every route is in it and every path of it is routed).
func (s *Server) openAPI() map[string]any {
	schemas := map[string]any{}
	paths := map[string]map[string]any{}
	for _, rt := range s.table() {
		op := map[string]any{
			"summary":     rt.summary,
			"operationId": operationID(rt.method, rt.path),
			"responses":   map[string]any{},
		}
		var params []any
		for _, m := range pathParamRE.FindAllStringSubmatch(rt.path, -1) {
			params = append(params, map[string]any{"name": m[1], "in": "path", "required": true, "schema": map[string]any{"type": "string"}})
		}
		for _, q := range rt.query {
			params = append(params, map[string]any{"name": q, "in": "query", "schema": map[string]any{"type": "string"}})
		}
		if params != nil {
			op["parameters"] = params
		}
		if rt.in != nil {
			op["requestBody"] = map[string]any{"required": true, "content": map[string]any{
				"application/json": map[string]any{"schema": schemaOf(reflect.TypeOf(rt.in), schemas)}}}
		}
		ok := map[string]any{"description": "OK"}
		switch {
		case rt.out != nil:
			ok["content"] = map[string]any{"application/json": map[string]any{"schema": schemaOf(reflect.TypeOf(rt.out), schemas)}}
		case rt.raw != nil && strings.HasSuffix(rt.path, "/events"):
			ok["content"] = map[string]any{"text/event-stream": map[string]any{"schema": map[string]any{"type": "string"}}}
		case rt.raw != nil:
			ok["content"] = map[string]any{"application/octet-stream": map[string]any{"schema": map[string]any{"type": "string", "format": "binary"}}}
		}
		resp := op["responses"].(map[string]any)
		resp["200"] = ok
		errBody := map[string]any{"content": map[string]any{"application/json": map[string]any{"schema": schemaOf(reflect.TypeOf(apiError{}), schemas)}}}
		for code, desc := range map[string]string{"400": "Bad request", "401": "No or bad credentials", "403": "Forbidden", "404": "Not found"} {
			resp[code] = merge(map[string]any{"description": desc}, errBody)
		}
		if rt.public {
			op["security"] = []any{}
		}
		if paths[rt.path] == nil {
			paths[rt.path] = map[string]any{}
		}
		paths[rt.path][strings.ToLower(rt.method)] = op
	}
	return map[string]any{
		"openapi": "3.1.0",
		"info": map[string]any{"title": "kura server API", "version": apiVersion,
			"description": "Protection groups, recovery points, jobs and restores of kura server. Authenticate with Authorization: Bearer <API token>."},
		"servers":    []any{map[string]any{"url": "/"}},
		"paths":      paths,
		"security":   []any{map[string]any{"bearer": []any{}}},
		"components": map[string]any{"schemas": schemas, "securitySchemes": map[string]any{"bearer": map[string]any{"type": "http", "scheme": "bearer"}}},
	}
}

var pathParamRE = regexp.MustCompile(`\{([a-z]+)\}`)

func operationID(method, path string) string {
	p := strings.TrimPrefix(path, APIPrefix)
	p = pathParamRE.ReplaceAllString(p, "by-$1")
	return strings.ToLower(method) + strings.ReplaceAll(p, "/", "-")
}

func merge(a, b map[string]any) map[string]any {
	for k, v := range b {
		a[k] = v
	}
	return a
}

var timeType = reflect.TypeOf(time.Time{})
var rawType = reflect.TypeOf(json.RawMessage{})

// schemaOf returns the JSON Schema of t, registering named structs under
// components/schemas.
func schemaOf(t reflect.Type, schemas map[string]any) map[string]any {
	if t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch {
	case t == timeType:
		return map[string]any{"type": "string", "format": "date-time"}
	case t == rawType:
		return map[string]any{}
	}
	switch t.Kind() {
	case reflect.Bool:
		return map[string]any{"type": "boolean"}
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64, reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return map[string]any{"type": "integer"}
	case reflect.Float32, reflect.Float64:
		return map[string]any{"type": "number"}
	case reflect.String:
		return map[string]any{"type": "string"}
	case reflect.Slice, reflect.Array:
		if t.Elem().Kind() == reflect.Uint8 {
			return map[string]any{"type": "string", "contentEncoding": "base64"}
		}
		return map[string]any{"type": "array", "items": schemaOf(t.Elem(), schemas)}
	case reflect.Map:
		return map[string]any{"type": "object", "additionalProperties": schemaOf(t.Elem(), schemas)}
	case reflect.Interface:
		return map[string]any{}
	case reflect.Struct:
		name := t.Name()
		if name == "" {
			return structSchema(t, schemas)
		}
		if t.PkgPath() != "" {
			parts := strings.Split(t.PkgPath(), "/")
			pkg := parts[len(parts)-1]
			name = strings.ToUpper(pkg[:1]) + pkg[1:] + name
		}
		if _, ok := schemas[name]; !ok {
			schemas[name] = map[string]any{} // break cycles
			schemas[name] = structSchema(t, schemas)
		}
		return map[string]any{"$ref": "#/components/schemas/" + name}
	}
	return map[string]any{}
}

func structSchema(t reflect.Type, schemas map[string]any) map[string]any {
	props := map[string]any{}
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		if !f.IsExported() {
			continue
		}
		name := f.Name
		tag := f.Tag.Get("json")
		if tag == "-" {
			continue
		}
		if n, _, _ := strings.Cut(tag, ","); n != "" {
			name = n
		} else if yt, _, _ := strings.Cut(f.Tag.Get("yaml"), ","); yt != "" && tag == "" {
			name = yt
		}
		if f.Anonymous && tag == "" {
			if sub, ok := structSchema(f.Type, schemas)["properties"].(map[string]any); ok {
				for k, v := range sub {
					props[k] = v
				}
			}
			continue
		}
		props[name] = schemaOf(f.Type, schemas)
	}
	return map[string]any{"type": "object", "properties": props}
}
