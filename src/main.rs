fn main() {
    println!("sobot-sync skeleton");
}
