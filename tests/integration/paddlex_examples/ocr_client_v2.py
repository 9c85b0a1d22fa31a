# PaddleX general OCR pipeline, serving documentation: the Python example client (original API),
# verbatim; the test replaces only API_URL and file_path.
import base64
import requests

API_URL = "http://localhost:8080/ocr"
file_path = "./demo.jpg"

with open(file_path, "rb") as file:
    file_bytes = file.read()
    file_data = base64.b64encode(file_bytes).decode("ascii")

payload = {"file": file_data, "fileType": 1}

# Call the API
response = requests.post(API_URL, json=payload)

# Process the response data
assert response.status_code == 200
result = response.json()["result"]
for i, res in enumerate(result["ocrResults"]):
    print("Detected texts:")
    print(res["texts"])
    output_img_path = f"out_{i}.jpg"
    with open(output_img_path, "wb") as f:
        f.write(base64.b64decode(res["image"]))
    print(f"Output image saved at {output_img_path}")
